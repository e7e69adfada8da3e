package main

import (
	"encoding/json"
	"io"
	"math"
	"slices"
	"time"
)

// Summary is the result of one driver run. Latencies are in milliseconds,
// of successful (2xx) requests only.
type Summary struct {
	Label    string  `json:"label,omitempty"`
	Sent     int     `json:"sent"`
	OK       int     `json:"ok"`
	Rejected int     `json:"rejected"` // 429 and 503: the host or proxy refused the job
	Failed   int     `json:"failed"`   // other statuses and transport errors
	Seconds  float64 `json:"seconds"`  // wall time from the first send to the last answer
	PerSec   float64 `json:"per_sec"`  // successful requests per second
	MeanMS   float64 `json:"mean_ms"`
	P50MS    float64 `json:"p50_ms"`
	P90MS    float64 `json:"p90_ms"`
	P99MS    float64 `json:"p99_ms"`
	MaxMS    float64 `json:"max_ms"`
	// Statuses counts the answers by HTTP status (0: transport error).
	Statuses map[int]int `json:"statuses"`
	// FirstError is one transport error, for the log.
	FirstError string `json:"first_error,omitempty"`
}

// result is one request's outcome.
type result struct {
	status  int
	latency time.Duration
	err     error
}

// summarize builds the Summary of results over the wall time elapsed.
func summarize(label string, results []result, elapsed time.Duration) Summary {
	s := Summary{Label: label, Sent: len(results), Seconds: elapsed.Seconds(), Statuses: map[int]int{}}
	lat := make([]float64, 0, len(results))
	for _, r := range results {
		s.Statuses[r.status]++
		switch {
		case r.err == nil && r.status >= 200 && r.status < 300:
			s.OK++
			lat = append(lat, float64(r.latency)/float64(time.Millisecond))
		case r.status == 429 || r.status == 503:
			s.Rejected++
		default:
			s.Failed++
			if r.err != nil && s.FirstError == "" {
				s.FirstError = r.err.Error()
			}
		}
	}
	if elapsed > 0 {
		s.PerSec = float64(s.OK) / elapsed.Seconds()
	}
	fillLatency(&s, lat)
	return s
}

// fillLatency sets the latency fields of s from lat (milliseconds).
func fillLatency(s *Summary, lat []float64) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	sum := 0.0
	for _, v := range lat {
		sum += v
	}
	s.MeanMS = round3(sum / float64(len(lat)))
	s.P50MS = round3(percentile(lat, 0.50))
	s.P90MS = round3(percentile(lat, 0.90))
	s.P99MS = round3(percentile(lat, 0.99))
	s.MaxMS = round3(lat[len(lat)-1])
	s.PerSec = round3(s.PerSec)
	s.Seconds = round3(s.Seconds)
}

// percentile returns the nearest-rank p-quantile of sorted.
func percentile(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// writeJSON writes v as one indented JSON object.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
