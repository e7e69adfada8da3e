package main

import (
	"context"
	"flag"
	"os"
	"time"
)

// runOffline computes the ideal earliest-finish-time schedule of the same
// arrival sequence as load: one-slot FIFO hosts of the given speeds, each
// job placed on arrival on the host where it would finish first, knowing
// every job's exact work, every host's exact speed and queue. A job's
// service time is units × base / speed + overhead, where overhead is the
// per-job time of the real service that does not scale with GPU speed
// (render, encode, store, HTTP; the bench measures it on an idle host).
func runOffline(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("offline", flag.ContinueOnError)
	seq, speeds := seqFlags(fs)
	overhead := fs.Duration("overhead", 0, "per-job time that does not scale with speed")
	label := fs.String("label", "offline ideal", "label of the run in the output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if seq.speeds, err = parseSpeeds(*speeds); err != nil {
		return err
	}
	free := make([]time.Duration, len(seq.speeds)) // when each host's queue empties
	jobs := seq.jobs()
	results := make([]result, len(jobs))
	var last time.Duration
	for i, j := range jobs {
		best, bestEnd := -1, time.Duration(0)
		for h, sp := range seq.speeds {
			service := time.Duration(j.units*seq.base/sp*float64(time.Second)) + *overhead
			end := max(free[h], j.at) + service
			if best < 0 || end < bestEnd {
				best, bestEnd = h, end
			}
		}
		free[best] = bestEnd
		results[i] = result{status: 200, latency: bestEnd - j.at}
		last = max(last, bestEnd)
	}
	return writeJSON(os.Stdout, summarize(*label, results, last))
}
