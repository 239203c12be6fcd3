package bench

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram counts durations in log-linear buckets (like HdrHistogram): exact below 256 µs,
// then 128 buckets per power of two, so any percentile is within 1% of the true value. Its
// counters are atomic, so thousands of goroutines record into it without a lock and the
// progress line reads it while they do.
type histogram struct {
	counts [histBuckets]atomic.Uint64
	total  atomic.Uint64
	max    atomic.Uint64 // µs
}

const (
	subBits     = 7
	subCount    = 1 << subBits // buckets per power of two
	linearLimit = 2 * subCount // values below this have a bucket each
	// 64-bit values need (64 - subBits - 1) doublings above the linear range.
	histBuckets = linearLimit + (64-subBits-1)*subCount
)

// bucketOf maps a value in µs to its bucket.
func bucketOf(v uint64) int {
	if v < linearLimit {
		return int(v)
	}
	shift := bits.Len64(v) - (subBits + 1) // >= 1
	top := v >> shift                      // in [subCount, 2*subCount)
	return linearLimit + (shift-1)*subCount + int(top-subCount)
}

// bucketRange is the smallest and largest value that fall into bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < linearLimit {
		return uint64(i), uint64(i)
	}
	i -= linearLimit
	shift := i/subCount + 1
	top := uint64(i%subCount + subCount)
	return top << shift, (top+1)<<shift - 1
}

// Record adds one duration; negative durations (clock steps) count as zero.
func (h *histogram) Record(d time.Duration) {
	us := uint64(max(d, 0) / time.Microsecond)
	h.counts[bucketOf(us)].Add(1)
	h.total.Add(1)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			return
		}
	}
}

// Max is the largest value recorded.
func (h *histogram) Max() time.Duration { return time.Duration(h.max.Load()) * time.Microsecond }

// Quantile returns the value below which a fraction q (0..1) of the recorded values fall,
// taken as the middle of its bucket; 0 when nothing was recorded.
func (h *histogram) Quantile(q float64) time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	// The rank of the wanted value, 1-based: the nearest-rank definition of a percentile.
	rank := uint64(q*float64(n) + 0.999999)
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, hi := bucketRange(i)
			mid := min(lo+(hi-lo)/2, h.max.Load())
			return time.Duration(mid) * time.Microsecond
		}
	}
	return h.Max()
}

// Ms is a duration in milliseconds with fractions, as the report prints them.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
