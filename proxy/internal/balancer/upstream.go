package balancer

import (
	"math"
	"net/url"
	"sync/atomic"
	"time"
)

// Defaults for the passive health checks and the speed estimate.
const (
	// DefaultSecPerUnit is the speed assumed for a host before it has
	// finished any request: one unit of work per second (see Estimator).
	DefaultSecPerUnit = 1.0
	// speedAlpha is the EWMA weight of a new seconds-per-unit sample.
	speedAlpha = 0.3
	// latencyAlpha is the EWMA weight of a new latency sample.
	latencyAlpha = 0.2
	// softFailLimit is how many consecutive soft failures (5xx, timeouts)
	// eject a host; a connection error ejects at once.
	softFailLimit = 3
	// backoffBase and backoffMax bound the passive ejection back-off, which
	// doubles with each ejection that follows another without a success.
	backoffBase = time.Second
	backoffMax  = 16 * time.Second
	// workScale stores work as fixed-point integers so it can live in an
	// atomic.Int64.
	workScale = 1000
)

// Upstream is the live state of one backend host. All methods are safe for
// concurrent use; state lives in atomics so the data path takes no lock.
// Upstream values must not be copied.
type Upstream struct {
	// ID is the api_hosts row id, or 0 for hosts from configuration.
	ID int64
	// Address is the address as configured (for example
	// "http://10.0.0.7:5000"); it identifies the host across reloads.
	Address string
	// URL is Address parsed; requests go to its scheme and host, and its
	// path (if any) is prefixed to the request path.
	URL *url.URL

	weight   atomic.Uint64 // float64 bits; 0 means no new requests
	draining atomic.Bool
	removed  atomic.Bool

	// active health check state; written by one checker goroutine
	unhealthy  atomic.Bool
	lastCheck  atomic.Int64 // unix nanos of the last active check
	checkError atomic.Pointer[string]
	slots      atomic.Int64 // reported by /health; 0 = not reported
	repFlight  atomic.Int64 // reported in_flight
	repQueued  atomic.Int64 // reported queued
	queueSize  atomic.Int64 // reported bound of the host's wait queue
	ownAtCheck atomic.Int64 // our in-flight when the report arrived

	// passive health
	consecFails atomic.Int64
	ejections   atomic.Int64
	downUntil   atomic.Int64 // unix nanos; 0 = not ejected

	// load and speed
	inFlight    atomic.Int64
	outstanding atomic.Int64 // work units × workScale
	busyStart   atomic.Int64 // unix nanos when inFlight last rose from 0
	lastDone    atomic.Int64 // unix nanos of the last completion
	secPerUnit  atomic.Uint64
	latency     atomic.Uint64 // EWMA of request latency in seconds

	// counters
	requests atomic.Uint64
	failures atomic.Uint64
	errs5xx  atomic.Uint64
	timeouts atomic.Uint64
}

// NewUpstream returns a healthy upstream for address (already parsed into
// u) with weight 1 and no learned speed.
func NewUpstream(id int64, address string, u *url.URL) *Upstream {
	up := &Upstream{ID: id, Address: address, URL: u}
	up.SetWeight(1)
	return up
}

// String returns the address.
func (u *Upstream) String() string { return u.Address }

// SetWeight sets the relative capacity. Zero or negative stops new requests;
// for EEFT the weight scales the speed assumed before any is learned, for
// LeastConn it divides the in-flight count. RoundRobin ignores it.
func (u *Upstream) SetWeight(w float64) {
	if w < 0 || math.IsNaN(w) {
		w = 0
	}
	u.weight.Store(math.Float64bits(w))
}

// Weight returns the relative capacity set by SetWeight.
func (u *Upstream) Weight() float64 { return math.Float64frombits(u.weight.Load()) }

// SetDraining marks the host as draining: it gets no new requests while its
// in-flight requests finish.
func (u *Upstream) SetDraining(d bool) { u.draining.Store(d) }

// Draining reports whether SetDraining(true) is in effect.
func (u *Upstream) Draining() bool { return u.draining.Load() }

// MarkRemoved takes the host out of service for good: it gets no new
// requests, in-flight ones finish. Used when its row is deleted.
func (u *Upstream) MarkRemoved() { u.removed.Store(true) }

// Removed reports whether MarkRemoved was called.
func (u *Upstream) Removed() bool { return u.removed.Load() }

// Healthy reports whether the active checks consider the host up and the
// passive checks have not ejected it at time now.
func (u *Upstream) Healthy(now time.Time) bool {
	return !u.unhealthy.Load() && now.UnixNano() >= u.downUntil.Load()
}

// Available reports whether the host may receive a new request at time now:
// healthy, not draining, not removed and with a positive weight.
func (u *Upstream) Available(now time.Time) bool {
	return !u.removed.Load() && !u.draining.Load() && u.weight.Load() != 0 && u.Healthy(now)
}

// InFlight returns the number of requests the proxy has on this host.
func (u *Upstream) InFlight() int64 { return u.inFlight.Load() }

// Outstanding returns the estimated work of the proxy's in-flight requests
// on this host, in work units.
func (u *Upstream) Outstanding() float64 {
	return float64(u.outstanding.Load()) / workScale
}

// SecPerUnit returns the learned seconds per unit of work, or 0 before the
// first completed request.
func (u *Upstream) SecPerUnit() float64 { return math.Float64frombits(u.secPerUnit.Load()) }

// Slots returns the concurrent jobs the host reported in its last /health,
// or 0 when it has not reported any (hosts other than gpusvc).
func (u *Upstream) Slots() int64 { return u.slots.Load() }

// QueueSize returns how many requests the host said may wait for its slots
// (its bounded queue) in its last /health; 0 when it reported none.
func (u *Upstream) QueueSize() int64 { return u.queueSize.Load() }

// Ticket records one request started on an upstream; pass it to Done.
type Ticket struct {
	up       *Upstream
	work     int64
	start    int64
	queuedOn int64 // in-flight count before this request, 0 = ran at once
}

// Upstream returns the host the ticket was issued for.
func (t Ticket) Upstream() *Upstream { return t.up }

// Start records a request of the given work (units, ≥ 0) sent at now.
func (u *Upstream) Start(work float64, now time.Time) Ticket {
	w := int64(work * workScale)
	n := now.UnixNano()
	before := u.inFlight.Add(1) - 1
	if before == 0 {
		u.busyStart.Store(n)
	}
	u.outstanding.Add(w)
	u.requests.Add(1)
	return Ticket{up: u, work: w, start: n, queuedOn: before}
}

// Done records the end of the request t at now. learn says whether the
// request completed normally, so that its duration may teach the host's
// speed; failed or cancelled requests only release their load.
func (t Ticket) Done(now time.Time, learn bool) {
	u := t.up
	n := now.UnixNano()
	if learn && t.work > 0 {
		// On a FIFO host the service time of a request is the time since
		// it started or since the previous completion, whichever is later.
		// With several slots, completions interleave: scale the
		// inter-completion gap by the slot count when the request waited.
		begin := t.start
		last := u.lastDone.Load()
		scale := 1.0
		if t.queuedOn > 0 && last > begin {
			begin = last
			if s := u.slots.Load(); s > 1 {
				scale = float64(s)
			}
		}
		if d := n - begin; d > 0 {
			sample := float64(d) / 1e9 * scale / (float64(t.work) / workScale)
			updateEWMA(&u.secPerUnit, sample, speedAlpha)
		}
		updateEWMA(&u.latency, float64(n-t.start)/1e9, latencyAlpha)
	}
	if learn {
		u.lastDone.Store(n)
	}
	u.outstanding.Add(-t.work)
	u.inFlight.Add(-1)
}

// updateEWMA folds sample into the float64 stored in a; the first sample is
// taken as is.
func updateEWMA(a *atomic.Uint64, sample, alpha float64) {
	for {
		old := a.Load()
		prev := math.Float64frombits(old)
		next := sample
		if prev != 0 {
			next = prev + alpha*(sample-prev)
		}
		if a.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

// RecordSuccess clears the passive failure count after a good response.
func (u *Upstream) RecordSuccess() {
	if u.consecFails.Load() != 0 {
		u.consecFails.Store(0)
	}
	if u.ejections.Load() != 0 {
		u.ejections.Store(0)
	}
}

// FailureKind classifies a failed request for the passive health check.
type FailureKind int

// Failure kinds.
const (
	// FailConnect is a dial or connection error: the host is ejected at once.
	FailConnect FailureKind = iota
	// Fail5xx is a 5xx response that signals a broken host (the caller
	// decides which do; see package forward).
	Fail5xx
	// FailTimeout is an upstream timeout.
	FailTimeout
)

// RecordFailure counts a failure at now. A connection error ejects the host
// at once; softFailLimit consecutive 5xx or timeouts eject it too. Each
// ejection that follows another without a success in between doubles the
// back-off (1 s, 2 s, 4 s, ... up to 16 s); after it the host is tried again.
// It returns true if the host was ejected.
func (u *Upstream) RecordFailure(kind FailureKind, now time.Time) bool {
	u.CountFailure(kind)
	n := u.consecFails.Add(1)
	if kind != FailConnect && n < softFailLimit {
		return false
	}
	u.consecFails.Store(0)
	e := u.ejections.Add(1)
	backoff := backoffBase << min(e-1, 10)
	if backoff > backoffMax {
		backoff = backoffMax
	}
	u.downUntil.Store(now.Add(backoff).UnixNano())
	return true
}

// CountFailure counts a failure in the host's statistics without moving it
// toward ejection (used when ejecting it would leave its pool empty).
func (u *Upstream) CountFailure(kind FailureKind) {
	u.failures.Add(1)
	switch kind {
	case Fail5xx:
		u.errs5xx.Add(1)
	case FailTimeout:
		u.timeouts.Add(1)
	}
}

// CheckResult is the outcome of one active health check.
type CheckResult struct {
	// At is when the check finished.
	At time.Time
	// Err is nil when the host answered 2xx.
	Err error
	// Slots, InFlight, Queued and QueueSize are the capacity the host
	// reported; Slots is 0 when the body did not report it.
	Slots, InFlight, Queued, QueueSize int64
}

// SetCheck stores the result of an active check and the health state the
// checker derived from its rise/fall thresholds. Turning healthy clears any
// passive ejection, so a restarted host is tried again at once, and after
// being down also forgets the host's learned speed.
func (u *Upstream) SetCheck(r CheckResult, healthy bool) {
	u.lastCheck.Store(r.At.UnixNano())
	if r.Err != nil {
		msg := r.Err.Error()
		u.checkError.Store(&msg)
	} else {
		u.checkError.Store(nil)
		if r.Slots > 0 {
			u.slots.Store(r.Slots)
			u.repFlight.Store(r.InFlight)
			u.repQueued.Store(r.Queued)
			u.queueSize.Store(r.QueueSize)
			u.ownAtCheck.Store(u.inFlight.Load())
		}
	}
	wasUnhealthy := u.unhealthy.Swap(!healthy)
	if healthy && (wasUnhealthy || u.downUntil.Load() != 0) {
		u.downUntil.Store(0)
		u.consecFails.Store(0)
		u.ejections.Store(0)
	}
	if healthy && wasUnhealthy {
		// A host back from being down may be a different machine or a
		// restarted process: forget its learned speed, so that a stale
		// (say, pessimistic) estimate cannot keep it from ever being
		// chosen, and therefore from ever being measured again.
		u.secPerUnit.Store(0)
	}
}

// ActiveHealthy reports the active checks' verdict alone.
func (u *Upstream) ActiveHealthy() bool { return !u.unhealthy.Load() }

// Status is a point-in-time copy of an upstream's state, for GET
// /admin/hosts and metrics.
type Status struct {
	ID            int64     `json:"id,omitempty"`
	Address       string    `json:"address"`
	State         string    `json:"state"` // up, down, ejected, draining, disabled, removed
	Healthy       bool      `json:"healthy"`
	Weight        float64   `json:"weight"`
	InFlight      int64     `json:"in_flight"`
	Outstanding   float64   `json:"outstanding_work"`
	Slots         int64     `json:"reported_slots"`
	RepInFlight   int64     `json:"reported_in_flight"`
	RepQueued     int64     `json:"reported_queued"`
	SecPerUnit    float64   `json:"sec_per_unit"`
	LatencyEWMA   float64   `json:"latency_ewma_seconds"`
	Requests      uint64    `json:"requests"`
	Failures      uint64    `json:"failures"`
	Errors5xx     uint64    `json:"errors_5xx"`
	Timeouts      uint64    `json:"timeouts"`
	ConsecFails   int64     `json:"consecutive_failures"`
	EjectedUntil  time.Time `json:"ejected_until,omitzero"`
	LastCheck     time.Time `json:"last_check,omitzero"`
	LastCheckFail string    `json:"last_check_error,omitempty"`
}

// Status returns a copy of u's state at now.
func (u *Upstream) Status(now time.Time) Status {
	s := Status{
		ID:          u.ID,
		Address:     u.Address,
		Healthy:     u.Healthy(now),
		Weight:      u.Weight(),
		InFlight:    u.inFlight.Load(),
		Outstanding: u.Outstanding(),
		Slots:       u.slots.Load(),
		RepInFlight: u.repFlight.Load(),
		RepQueued:   u.repQueued.Load(),
		SecPerUnit:  u.SecPerUnit(),
		LatencyEWMA: math.Float64frombits(u.latency.Load()),
		Requests:    u.requests.Load(),
		Failures:    u.failures.Load(),
		Errors5xx:   u.errs5xx.Load(),
		Timeouts:    u.timeouts.Load(),
		ConsecFails: u.consecFails.Load(),
	}
	if d := u.downUntil.Load(); d > now.UnixNano() {
		s.EjectedUntil = time.Unix(0, d).UTC()
	}
	if c := u.lastCheck.Load(); c != 0 {
		s.LastCheck = time.Unix(0, c).UTC()
	}
	if e := u.checkError.Load(); e != nil {
		s.LastCheckFail = *e
	}
	switch {
	case u.Removed():
		s.State = "removed"
	case u.Weight() == 0:
		s.State = "disabled"
	case u.Draining():
		s.State = "draining"
	case !u.ActiveHealthy():
		s.State = "down"
	case !s.EjectedUntil.IsZero():
		s.State = "ejected"
	default:
		s.State = "up"
	}
	return s
}
