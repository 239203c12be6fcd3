package api

import (
	"net/http"
)

// health tells load balancers and DNS whether to send clients here: 200 when this node can
// take writes (it reaches a quorum), 503 when it cannot, so a cut-off or dying data center is
// drained within seconds. A cut-off node still serves reads until it fences itself (stops its
// JetStream so that its elections cannot unseat the majority's leaders when the link heals).
func (srv *Server) health(w http.ResponseWriter, _ *http.Request) {
	h := srv.Store.Health()
	status := http.StatusOK
	if !h.Writable {
		status = http.StatusServiceUnavailable
	}
	node, dc := "firebreak", ""
	if c := srv.Config.Cluster; c != nil {
		node, dc = c.Node, c.DC
	}
	writeJSON(w, status, map[string]any{
		"node": node, "dc": dc, "writable": h.Writable, "readable": !h.Fenced, "fenced": h.Fenced,
		"connected_peers": h.Peers, "cluster_size": h.ClusterSize, "reached_dcs": h.DCs, "known_dcs": h.KnownDCs,
		"jetstream_current": h.MetaCurrent,
	})
}

// replication lists every stream and bucket with how many current replicas it has; "complete"
// is true when each has all it should. Operators (and the drill) watch it after a restore.
func (srv *Server) replication(w http.ResponseWriter, r *http.Request) {
	streams, err := srv.Store.Replication(r.Context())
	if err != nil {
		srv.writeError(w, r, err)
		return
	}
	complete := true
	for _, s := range streams {
		complete = complete && s.Current >= s.Replicas
	}
	writeJSON(w, http.StatusOK, map[string]any{"complete": complete, "streams": streams})
}
