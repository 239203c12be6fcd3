package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/firebreak/firebreak/internal/accountdata"
	"github.com/firebreak/firebreak/internal/push"
)

// Push rules live in the user's m.push_rules account data (see push.AccountDataType), which
// clients may only change through these endpoints.

func (srv *Server) pushRules(_ *http.Request, s *session) (any, error) {
	rs, err := srv.loadPushRules(s.UserID)
	return push.Document{Global: rs}, err
}

func (srv *Server) pushRulesScope(r *http.Request, s *session) (any, error) {
	if err := checkScope(r); err != nil {
		return nil, err
	}
	return srv.loadPushRules(s.UserID)
}

func (srv *Server) getPushRule(r *http.Request, s *session) (any, error) {
	return srv.findPushRule(r, s)
}

func (srv *Server) getPushRuleEnabled(r *http.Request, s *session) (any, error) {
	rule, err := srv.findPushRule(r, s)
	return map[string]bool{"enabled": rule.Enabled}, err
}

func (srv *Server) getPushRuleActions(r *http.Request, s *session) (any, error) {
	rule, err := srv.findPushRule(r, s)
	return map[string][]any{"actions": rule.Actions}, err
}

func (srv *Server) putPushRule(r *http.Request, s *session) (any, error) {
	var body struct {
		Actions    []any            `json:"actions"`
		Conditions []push.Condition `json:"conditions"`
		Pattern    string           `json:"pattern"`
	}
	if err := decodeBody(r, &body); err != nil {
		return nil, err
	}
	rule := push.Rule{RuleID: r.PathValue("ruleId"), Actions: body.Actions, Conditions: body.Conditions, Pattern: body.Pattern}
	q := r.URL.Query()
	return srv.editPushRules(r, s, func(rs *push.Ruleset, kind string) error {
		return rs.Put(kind, rule, q.Get("before"), q.Get("after"))
	})
}

func (srv *Server) deletePushRule(r *http.Request, s *session) (any, error) {
	return srv.editPushRules(r, s, func(rs *push.Ruleset, kind string) error {
		return rs.Delete(kind, r.PathValue("ruleId"))
	})
}

func (srv *Server) setPushRuleEnabled(r *http.Request, s *session) (any, error) {
	var body struct {
		Enabled *bool `json:"enabled"`
	}
	if err := decodeBody(r, &body); err != nil {
		return nil, err
	}
	if body.Enabled == nil {
		return nil, missingParam("enabled")
	}
	return srv.editPushRules(r, s, func(rs *push.Ruleset, kind string) error {
		return rs.SetEnabled(kind, r.PathValue("ruleId"), *body.Enabled)
	})
}

func (srv *Server) setPushRuleActions(r *http.Request, s *session) (any, error) {
	var body struct {
		Actions []any `json:"actions"`
	}
	if err := decodeBody(r, &body); err != nil {
		return nil, err
	}
	return srv.editPushRules(r, s, func(rs *push.Ruleset, kind string) error {
		return rs.SetActions(kind, r.PathValue("ruleId"), body.Actions)
	})
}

// checkScope accepts the only scope the spec has left: "global".
func checkScope(r *http.Request) error {
	if scope := r.PathValue("scope"); scope != "global" {
		return errorf(http.StatusBadRequest, "M_INVALID_PARAM", "Unknown push rule scope %q", scope)
	}
	return nil
}

// loadPushRules is the user's effective ruleset: the stored one, or the server defaults for a
// user who never changed a rule.
func (srv *Server) loadPushRules(userID string) (push.Ruleset, error) {
	content, err := srv.AccountData.Get(userID, "", push.AccountDataType)
	if err != nil && !errors.Is(err, accountdata.ErrNotFound) {
		return push.Ruleset{}, err
	}
	return push.Load(userID, content)
}

func (srv *Server) findPushRule(r *http.Request, s *session) (push.Rule, error) {
	if err := checkScope(r); err != nil {
		return push.Rule{}, err
	}
	rs, err := srv.loadPushRules(s.UserID)
	if err != nil {
		return push.Rule{}, err
	}
	rule, err := rs.Find(r.PathValue("kind"), r.PathValue("ruleId"))
	return rule, pushRuleError(err)
}

// editPushRules applies edit to the user's ruleset for the {kind} of the path and stores the
// result. Clients such as Element send several changes at once, and to any node: each edit is
// a compare-and-set of the whole ruleset (accountdata.Modify), so none undoes another.
func (srv *Server) editPushRules(r *http.Request, s *session, edit func(rs *push.Ruleset, kind string) error) (any, error) {
	if err := checkScope(r); err != nil {
		return nil, err
	}
	err := srv.AccountData.Modify(r.Context(), s.UserID, "", push.AccountDataType, func(old json.RawMessage) (json.RawMessage, error) {
		rs, err := push.Load(s.UserID, old)
		if err != nil {
			return nil, err
		}
		if err := edit(&rs, r.PathValue("kind")); err != nil {
			return nil, pushRuleError(err)
		}
		return json.Marshal(push.Document{Global: rs})
	})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// pushRuleError maps the push package's errors onto the spec's codes.
func pushRuleError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, push.ErrNotFound):
		return notFound("%v", err)
	case errors.Is(err, push.ErrMissingField):
		return errorf(http.StatusBadRequest, "M_MISSING_PARAM", "%v", err)
	case errors.Is(err, push.ErrInvalidRule):
		return badJSON("%v", err)
	case errors.Is(err, push.ErrUnknownKind), errors.Is(err, push.ErrInvalidID), errors.Is(err, push.ErrBadPosition):
		return errorf(http.StatusBadRequest, "M_INVALID_PARAM", "%v", err)
	}
	return err
}
