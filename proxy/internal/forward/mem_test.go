package forward_test

import (
	"runtime"
	"testing"
	"time"
)

// measurePeakHeap runs fn and returns the largest growth of HeapInuse over
// its value before fn, sampled every 2 ms.
func measurePeakHeap(tb testing.TB, fn func()) uint64 {
	tb.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	done := make(chan struct{})
	peakc := make(chan uint64)
	go func() {
		var peak uint64
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > base && m.HeapInuse-base > peak {
				peak = m.HeapInuse - base
			}
			select {
			case <-done:
				peakc <- peak
				return
			case <-t.C:
			}
		}
	}()
	fn()
	close(done)
	return <-peakc
}
