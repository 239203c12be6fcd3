package bench

import "testing"

func TestDeliveriesReconcile(t *testing.T) {
	d := newDeliveries()
	d.seen(1) // a member's sync shows message 1 before its PUT returns
	d.acked(1, 2)
	d.seen(1)
	d.seen(1) // one appearance too many
	d.acked(2, 3)
	d.seen(2)
	d.seen(3) // message 3's send failed at the client, yet the server stored it
	owed, delivered, unacked, dupes := d.counts()
	if owed != 5 || delivered != 3 || unacked != 1 || dupes != 1 {
		t.Errorf("owed %d delivered %d unacked %d dupes %d, want 5 3 1 1", owed, delivered, unacked, dupes)
	}
}
