package bench

import "sync"

// deliveries matches what members' syncs show against what the server acknowledged, message
// by message. A delivery often arrives before its send's acknowledgement, and a send the
// bench gave up on may still be stored and delivered, so counters alone would mix the two.
type deliveries struct {
	mu   sync.Mutex
	msgs map[uint64]*msgState // by the message's number in this run

	owed      uint64 // one per other member of the room, for every acknowledged send
	delivered uint64 // of those, how many appeared in a sync
	unacked   uint64 // appearances of messages whose send failed or was abandoned
	dupes     uint64 // appearances beyond one per member (the same event twice)
}

type msgState struct {
	recipients int
	seen       int
	acked      bool
}

func newDeliveries() *deliveries { return &deliveries{msgs: map[uint64]*msgState{}} }

func (d *deliveries) state(n uint64) *msgState {
	m := d.msgs[n]
	if m == nil {
		m = &msgState{}
		d.msgs[n] = m
	}
	return m
}

// acked records that message n was acknowledged and is owed to recipients members.
func (d *deliveries) acked(n uint64, recipients int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.state(n)
	m.acked, m.recipients = true, recipients
	d.owed += uint64(recipients)
	d.unacked -= uint64(m.seen)
	d.delivered += uint64(min(m.seen, recipients))
	d.dupes += uint64(max(m.seen-recipients, 0))
}

// seen records that one member's sync showed message n.
func (d *deliveries) seen(n uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.state(n)
	m.seen++
	switch {
	case !m.acked:
		d.unacked++
	case m.seen <= m.recipients:
		d.delivered++
	default:
		d.dupes++
	}
}

// counts returns the owed, delivered, unacknowledged and duplicate deliveries so far.
func (d *deliveries) counts() (owed, delivered, unacked, dupes uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.owed, d.delivered, d.unacked, d.dupes
}
