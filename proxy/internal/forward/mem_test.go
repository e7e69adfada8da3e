package forward_test

import (
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/proxy/internal/forward"
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

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// concurrentUploads sends n concurrent multipart POSTs of size bytes each to
// url (an echo backend behind the proxy) and checks every one arrived
// whole. The bodies are generated on the fly, so the test itself holds no
// large buffers.
func concurrentUploads(tb testing.TB, url string, n int, size int64) {
	tb.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			pr, pw := io.Pipe()
			mw := multipart.NewWriter(pw)
			go func() {
				part, _ := mw.CreateFormFile("file", fmt.Sprintf("f%d.bin", i))
				_, err := io.CopyN(part, zeroReader{}, size)
				if err == nil {
					err = mw.Close()
				}
				pw.CloseWithError(err)
			}()
			req, _ := http.NewRequest("POST", url, pr)
			req.Header.Set("Content-Type", mw.FormDataContentType())
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			var e echoed
			err = json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if err == nil && (resp.StatusCode != http.StatusOK || e.Length < size) {
				err = fmt.Errorf("upload %d: status %d, arrived with %d bytes", i, resp.StatusCode, e.Length)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(tb, err)
	}
}

// TestConcurrentUploadsMemoryFlat sends 50 concurrent 5 MB uploads, to an
// account route and to a GPU route, and checks the proxy's heap does not
// grow with them: account bodies are streamed, and of a GPU body only a
// bounded prefix is held for the work estimate.
func TestConcurrentUploadsMemoryFlat(t *testing.T) {
	// Not parallel: it measures this process's heap.
	acct := echoBackend(t, "account")
	gpu := echoBackend(t, "gpu")
	f := newFixture(t, forward.Config{}, []string{gpu.URL}, []string{acct.URL})

	const n, size = 50, 5_000_000
	for _, tc := range []struct {
		path  string
		limit uint64
	}{
		{"/upload", 40 << 20},
		{"/upscale", 16 << 20},
	} {
		peak := measurePeakHeap(t, func() { concurrentUploads(t, f.proxy.URL+tc.path, n, size) })
		t.Logf("%s: peak heap growth during %d concurrent 5 MB uploads: %.1f MiB (the bodies total %d MiB)",
			tc.path, n, float64(peak)/(1<<20), n*size>>20)
		require.Less(t, peak, tc.limit, tc.path)
	}
	up := f.gpu.Hosts()[0]
	require.Eventually(t, func() bool { return up.InFlight() == 0 }, time.Second, 5*time.Millisecond)
}
