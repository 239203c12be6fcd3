package push

import (
	"bytes"
	"encoding/json"
	"sync"
)

// AccountDataType is the global account data a user's ruleset is kept in. Keeping the whole
// effective ruleset there is what the spec asks for: sync then delivers it to clients.
const AccountDataType = "m.push_rules"

// Document is the content of m.push_rules and the body of GET /pushrules/.
type Document struct {
	Global Ruleset `json:"global"`
}

// Load reads stored m.push_rules content. No content means the user never changed a rule,
// so they have the server defaults.
func Load(userID string, content []byte) (Ruleset, error) {
	if content == nil {
		return DefaultRules(userID), nil
	}
	var doc Document
	if err := json.Unmarshal(content, &doc); err != nil {
		return Ruleset{}, err
	}
	return withDefaults(DefaultRules(userID), doc.Global.normalize()), nil
}

// withDefaults lays a stored ruleset over this server's defaults: the server-default rules are
// always this version's (a ruleset stored by an older one gains rules added since), with the
// enabled state and actions the user set on them; the user's own rules keep their order and
// come before the defaults of their kind, .m.rule.master excepted, as the spec ranks them.
func withDefaults(defaults, stored Ruleset) Ruleset {
	return Ruleset{
		Override:  mergeKind(defaults.Override, stored.Override),
		Content:   mergeKind(defaults.Content, stored.Content),
		Room:      mergeKind(defaults.Room, stored.Room),
		Sender:    mergeKind(defaults.Sender, stored.Sender),
		Underride: mergeKind(defaults.Underride, stored.Underride),
	}
}

func mergeKind(defaults, stored []Rule) []Rule {
	settings := map[string]Rule{}
	out := []Rule{}
	var own []Rule
	for _, r := range stored {
		if r.Default {
			settings[r.RuleID] = r
		} else {
			own = append(own, r)
		}
	}
	for i, d := range defaults {
		if s, ok := settings[d.RuleID]; ok {
			d.Enabled, d.Actions = s.Enabled, s.Actions
		}
		if i == 0 && d.RuleID == ruleMaster {
			out = append(out, d)
			continue
		}
		if len(own) > 0 {
			out, own = append(out, own...), nil
		}
		out = append(out, d)
	}
	return append(out, own...)
}

// DocumentJSON is a user's m.push_rules document as it is served: the stored rules (nil: none)
// laid over this version's defaults.
func DocumentJSON(userID string, stored []byte) ([]byte, error) {
	rs, err := Load(userID, stored)
	if err != nil {
		return nil, err
	}
	return json.Marshal(Document{Global: rs})
}

// normalize turns absent lists and actions into empty ones, so clients see all five kinds and
// an action array on every rule, as with DefaultRules.
func (rs Ruleset) normalize() Ruleset {
	for _, l := range []*[]Rule{&rs.Override, &rs.Content, &rs.Room, &rs.Sender, &rs.Underride} {
		if *l == nil {
			*l = []Rule{}
		}
		for i := range *l {
			if (*l)[i].Actions == nil {
				(*l)[i].Actions = []any{}
			}
		}
	}
	return rs
}

// Source reads account data; *accountdata.Service is one.
type Source interface {
	Get(userID, roomID, evType string) (json.RawMessage, error)
}

// maxCachedRulesets bounds the rulesets a Cache keeps (about a kilobyte each); past it they are
// forgotten all at once, as each costs only one more parse to learn again.
const maxCachedRulesets = 100_000

// Cache gives each user's ruleset for evaluation. Unread counts need it on every sync of a room
// with new events, so it keeps the last parsed ruleset per user and parses again only when the
// stored bytes differ: comparing them costs far less than decoding them.
type Cache struct {
	src    Source
	limit  int
	mu     sync.Mutex
	parsed map[string]parsedRules
}

type parsedRules struct {
	content []byte
	rules   Ruleset
}

// NewCache reads rulesets from src.
func NewCache(src Source) *Cache {
	return &Cache{src: src, limit: maxCachedRulesets, parsed: map[string]parsedRules{}}
}

// Rules returns the user's ruleset. It is shared between callers, who must not modify it. A
// user without stored rules, or whose rules cannot be read, gets the server defaults; those
// without stored rules get them from the cache too, as most users never change their rules.
func (c *Cache) Rules(userID string) Ruleset {
	content, err := c.src.Get(userID, "", AccountDataType)
	if err != nil {
		content = nil
	}
	c.mu.Lock()
	p, ok := c.parsed[userID]
	c.mu.Unlock()
	if ok && bytes.Equal(p.content, content) && (p.content == nil) == (content == nil) {
		return p.rules
	}
	rules := defaultsToEvaluate(userID)
	if content != nil {
		if rules, err = Load(userID, content); err != nil {
			return DefaultRules(userID)
		}
	}
	c.mu.Lock()
	if len(c.parsed) >= c.limit {
		clear(c.parsed)
	}
	c.parsed[userID] = parsedRules{content: content, rules: rules}
	c.mu.Unlock()
	return rules
}
