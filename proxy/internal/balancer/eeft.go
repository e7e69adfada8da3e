package balancer

import (
	"sync/atomic"
	"time"
)

// EEFT (earliest expected finish time) sends a job to the available host
// that should finish it first: the host minimising
//
//	(queued work ahead of the job + the job's work) × seconds per unit
//
// where the work ahead is the proxy's own in-flight work on the host (less
// what the host has already done of the request it is running) plus the
// queue the host reported in its last /health beyond the proxy's own
// requests, spread over the host's reported slots; and seconds per unit is
// the host's learned speed (an EWMA, see Ticket.Done). Hosts that have not
// finished a request yet are assumed to run at the mean learned speed of the
// pool, scaled by their weight. Ties go to the hosts in turn.
// The zero value is ready for use.
type EEFT struct {
	next atomic.Uint64
}

// Select implements Selector.
func (e *EEFT) Select(pool []*Upstream, job Job, now time.Time, skip func(*Upstream) bool) *Upstream {
	n := len(pool)
	if n == 0 {
		return nil
	}
	prior, learned := 0.0, 0
	for _, u := range pool {
		if s := u.SecPerUnit(); s > 0 {
			prior += s
			learned++
		}
	}
	if learned > 0 {
		prior /= float64(learned)
	} else {
		prior = DefaultSecPerUnit
	}
	off := int(e.next.Add(1) % uint64(n))
	var best *Upstream
	bestCost := 0.0
	for i := range n {
		u := pool[(off+i)%n]
		if !u.Available(now) || (skip != nil && skip(u)) {
			continue
		}
		cost := u.ExpectedFinish(job.Work, now, prior)
		if best == nil || cost < bestCost {
			best, bestCost = u, cost
		}
	}
	return best
}

// ExpectedFinish returns the seconds from now until a new job of the given
// work would finish on u, assuming priorSecPerUnit (divided by the weight)
// while u's speed is not yet learned.
func (u *Upstream) ExpectedFinish(work float64, now time.Time, priorSecPerUnit float64) float64 {
	spu := u.SecPerUnit()
	if spu == 0 {
		spu = priorSecPerUnit
		if w := u.Weight(); w > 0 {
			spu /= w
		}
	}
	n := u.inFlight.Load()
	ahead := u.Outstanding()
	if n > 0 {
		// The request at the head has been running since the host last
		// became busy or last finished one; discount what it has done,
		// but never below the work of the requests queued behind it.
		head := max(u.busyStart.Load(), u.lastDone.Load())
		done := float64(now.UnixNano()-head) / 1e9 / spu
		floor := ahead * float64(n-1) / float64(n)
		ahead = max(ahead-done, floor)
	}
	// Requests the host reported that are not ours (other proxy replicas,
	// direct callers) count at the mean work of ours, or of this job.
	jobs := n
	if ext := u.repFlight.Load() + u.repQueued.Load() - u.ownAtCheck.Load(); ext > 0 {
		mean := work
		if n > 0 {
			mean = u.Outstanding() / float64(n)
		}
		ahead += float64(ext) * mean
		jobs += ext
	}
	slots := max(u.slots.Load(), 1)
	wait := 0.0
	if jobs >= slots {
		wait = ahead / float64(slots)
	}
	return (wait + work) * spu
}
