package store

import (
	"sync"
	"sync/atomic"
)

// StartMirrors runs each mirror on wg (each run returns when its context ends, and calls the
// func it is given once it has loaded what was stored) and returns a channel closed when every
// one has: a node serves only once what its syncs read is in memory.
func StartMirrors(wg *sync.WaitGroup, runs ...func(loaded func())) <-chan struct{} {
	all := make(chan struct{})
	var left atomic.Int32
	left.Store(int32(len(runs)))
	for _, run := range runs {
		var once sync.Once
		loaded := func() {
			once.Do(func() {
				if left.Add(-1) == 0 {
					close(all)
				}
			})
		}
		wg.Go(func() { run(loaded) })
	}
	return all
}
