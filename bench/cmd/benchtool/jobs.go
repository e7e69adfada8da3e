package main

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// jobKind is one kind of generation request of the scheduling mix: a Text
// to Image request whose size in work units (samples × steps/25 ×
// pixels/512²) is what gpusvc's pacing sleeps for and what the proxy's
// estimator computes from the same fields.
type jobKind struct {
	samples, steps, width, height int
	weight                        int
}

// units is the kind's work in units (one 512×512, 25-step sample).
func (k jobKind) units() float64 {
	return float64(k.samples) * float64(k.steps) / 25 * float64(k.width*k.height) / (512 * 512)
}

// jobMix is the request mix: mostly single small images, some larger and
// multi-sample ones (mean 2.55 units).
var jobMix = []jobKind{
	{samples: 1, steps: 25, width: 512, height: 512, weight: 4}, // 1 unit
	{samples: 1, steps: 50, width: 512, height: 512, weight: 2}, // 2
	{samples: 2, steps: 25, width: 512, height: 512, weight: 2}, // 2
	{samples: 1, steps: 25, width: 768, height: 768, weight: 1}, // 2.25
	{samples: 4, steps: 30, width: 512, height: 512, weight: 1}, // 4.8
	{samples: 4, steps: 25, width: 768, height: 768, weight: 1}, // 9
}

// job is one arrival of the sequence.
type job struct {
	at    time.Duration // since the start of the run
	kind  jobKind
	seed  int64
	units float64
}

// body returns the legacy POST /images body of j.
func (j job) body() []byte {
	return fmt.Appendf(nil,
		`{"inference_mode":"Text to Image","model_id":"alxdfy/noggles-v21-6400-best","prompt":"a frog wearing noggles","negative_prompt":"","samples":%d,"steps":%d,"seed":%d,"aspect_ratio":"%d:%d"}`,
		j.kind.samples, j.kind.steps, j.seed, j.kind.width, j.kind.height)
}

// sequence parameters, shared by load and offline so that both see the
// same arrivals.
type sequence struct {
	n      int       // jobs
	load   float64   // fraction of the fleet's capacity
	speeds []float64 // relative host speeds (1 = one unit per base seconds)
	base   float64   // seconds per unit at speed 1
	seed   uint64
}

// meanUnits is the mean work of jobMix.
func meanUnits() float64 {
	sum, n := 0.0, 0
	for _, k := range jobMix {
		sum += k.units() * float64(k.weight)
		n += k.weight
	}
	return sum / float64(n)
}

// rate returns the Poisson arrival rate in jobs per second: load × the
// fleet's units per second / the mean units per job.
func (s sequence) rate() float64 {
	capacity := 0.0
	for _, v := range s.speeds {
		capacity += v
	}
	return s.load * capacity / s.base / meanUnits()
}

// jobs draws the arrival sequence deterministically from the seed.
func (s sequence) jobs() []job {
	rng := rand.New(rand.NewPCG(s.seed, 0x6e6f756e73))
	var kinds []jobKind
	for _, k := range jobMix {
		for range k.weight {
			kinds = append(kinds, k)
		}
	}
	rate := s.rate()
	out := make([]job, s.n)
	t := 0.0
	for i := range out {
		t += rng.ExpFloat64() / rate
		k := kinds[rng.IntN(len(kinds))]
		out[i] = job{at: time.Duration(t * float64(time.Second)), kind: k, seed: rng.Int64N(1 << 31), units: k.units()}
	}
	return out
}

// parseSpeeds parses "1,1,0.5,0.25".
func parseSpeeds(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bad speed %q", f)
		}
		out = append(out, v)
	}
	return out, nil
}
