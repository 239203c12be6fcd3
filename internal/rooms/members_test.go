package rooms

import (
	"slices"
	"testing"
)

// TestMemberTallyFollowsChanges: after every membership change, the tally kept step by step
// equals one worked out from scratch: the joined and invited users ordered by their latest
// change, and their counts. A change that is neither (a knock, a ban of someone absent) leaves
// the list as it was; one that keeps a user present (a new display name) moves them last.
func TestMemberTallyFollowsChanges(t *testing.T) {
	steps := []struct{ user, membership string }{
		{"@a:x", "join"}, {"@b:x", "invite"}, {"@c:x", "join"}, {"@b:x", "join"},
		{"@a:x", "join"}, {"@d:x", "knock"}, {"@c:x", "leave"}, {"@e:x", "ban"},
		{"@d:x", "invite"}, {"@c:x", "join"}, {"@a:x", "ban"}, {"@b:x", "leave"},
		{"@d:x", "leave"}, {"@c:x", "leave"},
	}
	tally := &memberTally{}
	current := map[string]string{}
	lastChange := map[string]int{}
	for i, step := range steps {
		tally = tally.with(step.user, current[step.user], step.membership)
		current[step.user], lastChange[step.user] = step.membership, i

		var want []string
		joined, invited := 0, 0
		for user, m := range current {
			switch m {
			case "join":
				joined++
			case "invite":
				invited++
			default:
				continue
			}
			want = append(want, user)
		}
		slices.SortFunc(want, func(a, b string) int { return lastChange[a] - lastChange[b] })
		if !slices.Equal(tally.present, want) || tally.joined != joined || tally.invited != invited {
			t.Fatalf("after %s %s: %v, %d joined, %d invited; want %v, %d, %d", step.user, step.membership,
				tally.present, tally.joined, tally.invited, want, joined, invited)
		}
		if len(tally.present) != cap(tally.present) {
			t.Fatalf("after %s %s: the shared list has room to append into", step.user, step.membership)
		}
	}
}

// BenchmarkMemberTallyJoin is the tally's share of a join to a room of 10,000 members, paid
// under the model's write lock.
func BenchmarkMemberTallyJoin(b *testing.B) {
	tally := &memberTally{}
	for i := range 10000 {
		tally = tally.with(benchUser(i), "", "join")
	}
	for b.Loop() {
		tally.with(benchUser(10000), "", "join")
	}
}
