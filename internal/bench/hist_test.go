package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsAreContiguous(t *testing.T) {
	// Every value lands in a bucket whose range holds it, and buckets follow each other
	// without gaps or overlaps.
	prevHi := int64(-1)
	for i := 0; i < histBuckets; i++ {
		lo, hi := bucketRange(i)
		if int64(lo) != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d = [%d, %d] but bucketOf gives %d and %d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
		prevHi = int64(hi)
		if hi == math.MaxUint64 {
			if i != histBuckets-1 {
				t.Fatalf("range ends at bucket %d of %d", i, histBuckets)
			}
			return
		}
	}
	t.Fatalf("buckets end at %d, before the largest value", prevHi)
}

func TestQuantilesWithinOnePercent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h histogram
	var exact []time.Duration
	for range 100_000 {
		// Log-normal-ish latencies from ~100 µs to seconds, like real ones.
		d := time.Duration(math.Exp(rng.NormFloat64()*1.5+8)) * time.Microsecond
		h.Record(d)
		exact = append(exact, d.Truncate(time.Microsecond))
	}
	slices.Sort(exact)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		want := exact[int(math.Ceil(q*float64(len(exact))))-1]
		got := h.Quantile(q)
		if rel := math.Abs(float64(got-want)) / float64(want); rel > 0.01 {
			t.Errorf("q%.3f = %v, exact %v (off by %.2f%%)", q, got, want, 100*rel)
		}
	}
	if h.Max() != exact[len(exact)-1] {
		t.Errorf("max = %v, want %v", h.Max(), exact[len(exact)-1])
	}
	if n := h.total.Load(); n != uint64(len(exact)) {
		t.Errorf("count = %d, want %d", n, len(exact))
	}
}

func TestQuantileSmallSets(t *testing.T) {
	var h histogram
	if h.Quantile(0.99) != 0 {
		t.Fatal("empty histogram must report 0")
	}
	for _, ms := range []int{1, 2, 3, 4, 100} {
		h.Record(time.Duration(ms) * time.Millisecond)
	}
	// Nearest rank: p50 of 5 values is the 3rd, p99 the 5th.
	if got := h.Quantile(0.5); got < 2970*time.Microsecond || got > 3030*time.Microsecond {
		t.Errorf("p50 = %v, want about 3ms", got)
	}
	if got := h.Quantile(0.99); got < 99*time.Millisecond || got > 100*time.Millisecond {
		t.Errorf("p99 = %v, want about 100ms", got)
	}
	h.Record(-time.Second) // a clock step must not panic or wrap around
	if h.Quantile(0) != 0 {
		t.Errorf("p0 = %v after a negative value, want 0", h.Quantile(0))
	}
}
