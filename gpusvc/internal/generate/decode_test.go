package generate_test

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"hash/crc32"
	"image"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/gpusvc/internal/generate"
	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/gpuroute"
)

// hostilePNG is a ~1 KB PNG whose header claims a 16-bit RGBA w×h image:
// Go's decoder allocates the whole w×h×8-byte image before it finds the
// pixel data truncated (issue 13.3: 4096×4096 is 128 MiB).
func hostilePNG(t testing.TB, w, h uint32) []byte {
	t.Helper()
	var out bytes.Buffer
	out.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		_ = binary.Write(&out, binary.BigEndian, uint32(len(data)))
		c := crc32.NewIEEE()
		c.Write([]byte(typ))
		c.Write(data)
		out.WriteString(typ)
		out.Write(data)
		_ = binary.Write(&out, binary.BigEndian, c.Sum32())
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 16, 6 // 16 bits per sample, RGBA
	chunk("IHDR", ihdr)
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	_, _ = zw.Write(make([]byte, 4096)) // a few rows of zeros, then nothing
	require.NoError(t, zw.Close())
	chunk("IDAT", z.Bytes())
	chunk("IEND", nil)
	return out.Bytes()
}

// heapPeak samples the heap (HeapAlloc) every millisecond until stop is closed
// and returns the largest value seen.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-stop:
				out <- peak
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// Twenty concurrent hostile PNGs, on the anonymous Image to Image route
// and the challenge-token-only /mask route, are refused with 400 from
// their header: the live heap never grows by more than one decode's
// worth, where decoding them all would take 20 × 128 MiB.
func TestHostilePNGsDoNotAmplify(t *testing.T) {
	// Not parallel: it measures this process's heap.
	f := newFixture(t, nil, 0)
	ctx := context.Background()
	data := hostilePNG(t, 4096, 4096)
	require.Less(t, len(data), 2048)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	stop := make(chan struct{})
	peakc := heapPeak(stop)
	var wg sync.WaitGroup
	var invalid atomic.Int32
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if i%2 == 0 {
				job := generate.ImageJob{UserID: 67, Anonymous: true, Key: "", Mode: gpuroute.ModeImg2Img, Op: inference.OpImg2Img,
					Prompt: "a frog", Samples: 1, Steps: 10, Seed: int64(i), Input: data}
				_, err = f.svc.GenerateImages(ctx, job)
			} else {
				_, err = f.svc.Segment(ctx, generate.Caller{}, "", data, []image.Point{{X: 1, Y: 1}})
			}
			if apperr.Is(err, apperr.KindInvalid) {
				invalid.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	peak := <-peakc
	grew := int64(peak) - int64(base)
	t.Logf("live heap: base %d MiB, peak %d MiB (grew %d MiB) over 20 hostile PNGs", base>>20, peak>>20, grew>>20)
	require.EqualValues(t, 20, invalid.Load(), "every hostile PNG is a 400")
	require.Less(t, grew, int64(64<<20), "the heap grew by more than one bounded decode")
}
