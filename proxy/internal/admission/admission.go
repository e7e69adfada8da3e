package admission

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/shared/clock"
	"github.com/nounsai/sdserver/shared/config"
)

// Policies accepted by Config.Policy (ADMISSION_POLICY).
const (
	PolicyFair = "fair"
	PolicyFIFO = "fifo"
)

// Response headers set on requests that waited or were refused.
const (
	// HeaderPosition is the request's place in the queue when it arrived
	// (1 = next).
	HeaderPosition = "X-Queue-Position"
	// HeaderEstimatedStart is the estimated wait before the request
	// starts, in seconds, as estimated when it arrived.
	HeaderEstimatedStart = "X-Queue-Estimated-Start"
)

// Refusal reasons (the reason label of proxy_admission_rejections_total).
const (
	ReasonQueueFull = "queue_full"
	ReasonDeadline  = "deadline"
	ReasonTimeout   = "timeout"
)

// Config tunes a Controller. The zero value is a fair queue with the
// defaults below.
type Config struct {
	// Policy is PolicyFair (default) or PolicyFIFO.
	Policy string
	// QueueMax bounds the waiters; 0 means 256.
	QueueMax int
	// MaxWait bounds a wait; a request estimated to start later is refused
	// at once. 0 means 20 s.
	MaxWait time.Duration
	// UserShare is the fraction (0, 1] of the fleet's slots one user may
	// hold while others wait; 0 means 0.5.
	UserShare float64
	// SyncInterval is the period of the Redis sync; 0 means 1 s.
	SyncInterval time.Duration
	// TrustedProxies are peers whose X-Forwarded-For names the client.
	TrustedProxies []netip.Prefix
	// JWTSecrets verify the token that names the user (see the package
	// doc); with none every request is keyed by its IP.
	JWTSecrets [][]byte
	// RedisPrefix starts every Redis key.
	RedisPrefix string
	// ReplicaID names this replica in Redis; "" means a random one.
	ReplicaID string
}

func (c Config) withDefaults() Config {
	if c.Policy == "" {
		c.Policy = PolicyFair
	}
	c.QueueMax = config.OrDefault(c.QueueMax, 256)
	c.MaxWait = config.OrDefault(c.MaxWait, 20*time.Second)
	c.UserShare = config.OrDefault(c.UserShare, 0.5)
	c.SyncInterval = config.OrDefault(c.SyncInterval, time.Second)
	if c.ReplicaID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		c.ReplicaID = hex.EncodeToString(b[:])
	}
	return c
}

// Validate reports a bad policy or share.
func (c Config) Validate() error {
	switch c.Policy {
	case PolicyFair, PolicyFIFO, "":
	default:
		return fmt.Errorf("unknown admission policy %q (want fair or fifo)", c.Policy)
	}
	if c.UserShare < 0 || c.UserShare > 1 || math.IsNaN(c.UserShare) {
		return fmt.Errorf("user share %v is not in (0, 1]", c.UserShare)
	}
	return nil
}

// Deps are what a Controller uses besides its Config.
type Deps struct {
	// Pool is the GPU pool whose capacity admission fills. Required.
	Pool *balancer.Pool
	// Redis shares the per-user counts across replicas; nil runs this
	// replica alone.
	Redis redis.UniversalClient
	// OnRedisError receives each failed sync (the request path went on
	// without Redis); nil ignores them.
	OnRedisError func(error)
	// Registry receives the metrics; nil registers none.
	Registry prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Controller admits GPU requests. It is safe for concurrent use.
type Controller struct {
	cfg     Config
	deps    Deps
	key     func(*http.Request) string
	metrics *metrics

	mu          sync.Mutex
	q           *queue
	running     int
	runningWork float64
}

// New returns a controller; Run must run for the Redis sync and for
// capacity that grows without a request finishing (a host coming back).
func New(cfg Config, deps Deps) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Pool == nil {
		return nil, fmt.Errorf("admission: no GPU pool")
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	cfg = cfg.withDefaults()
	c := &Controller{cfg: cfg, deps: deps, q: newQueue(cfg.Policy == PolicyFIFO)}
	c.key = userKey(cfg.JWTSecrets, cfg.TrustedProxies)
	c.metrics = newMetrics(deps.Registry, c.queueLength)
	return c, nil
}

// Policy returns the policy in effect.
func (c *Controller) Policy() string { return c.cfg.Policy }

// Refusal is the error of a request that may not wait: the caller answers
// 503 with Retry-After and Message as JSON, and the queue headers.
type Refusal struct {
	// Reason is ReasonQueueFull, ReasonDeadline or ReasonTimeout.
	Reason string
	// Message is the public explanation.
	Message string
	// RetryAfter is when to try again (whole seconds, at least 1 s).
	RetryAfter time.Duration
	// Position and EstimatedStart are the queue headers' values.
	Position       int
	EstimatedStart time.Duration
}

func (r *Refusal) Error() string { return "admission refused: " + r.Reason }

// Headers sets the queue headers and Retry-After on h.
func (r *Refusal) Headers(h http.Header) {
	setQueueHeaders(h, r.Position, r.EstimatedStart)
	h.Set("Retry-After", strconv.Itoa(int(r.RetryAfter/time.Second)))
}

// Ticket is an admitted request; call Done once when it ends. The zero
// Ticket (a request admitted without counting) is valid.
type Ticket struct {
	c    *Controller
	u    *user
	work float64
	once *sync.Once
	// Waited reports whether the request waited in the queue.
	Waited bool
	// Position and EstimatedStart are the values of the queue headers,
	// set when Waited.
	Position       int
	EstimatedStart time.Duration
}

// Headers sets the queue headers on h when the request waited.
func (t Ticket) Headers(h http.Header) {
	if t.Waited {
		setQueueHeaders(h, t.Position, t.EstimatedStart)
	}
}

func setQueueHeaders(h http.Header, pos int, est time.Duration) {
	h.Set(HeaderPosition, strconv.Itoa(pos))
	h.Set(HeaderEstimatedStart, seconds(est))
}

// seconds formats d in seconds rounded up to a tenth ("1.2").
func seconds(d time.Duration) string {
	return strconv.FormatFloat(math.Ceil(d.Seconds()*10)/10, 'f', 1, 64)
}

// Done releases the request's slot and serves the next waiter. Safe to call
// more than once.
func (t Ticket) Done() {
	if t.c == nil {
		return
	}
	t.once.Do(func() {
		c := t.c
		c.mu.Lock()
		c.release(t.u, t.work)
		c.dispatch(c.deps.Now())
		c.mu.Unlock()
	})
}

// release counts one request of u with work as finished. c.mu is held.
func (c *Controller) release(u *user, work float64) {
	c.running--
	c.runningWork -= work
	u.running--
	c.q.forget(u)
}

// capacity is the fleet as admission sees it at one instant.
type capacity struct {
	hosts      int     // available hosts
	unbounded  bool    // some available host reports no slots
	free       int     // reported slots not taken by this replica
	room       int     // free plus the places in the hosts' own queues not taken by this replica
	fleet      int64   // reported slots of available hosts
	throughput float64 // work units per second of the fleet; +Inf while no speed is learned
}

// capacity reads the pool. c.mu is held (only for c.running).
func (c *Controller) capacity(now time.Time) capacity {
	var cp capacity
	hosts := c.deps.Pool.Hosts()
	prior, learned := 0.0, 0
	for _, u := range hosts {
		if s := u.SecPerUnit(); s > 0 {
			prior += s
			learned++
		}
	}
	if learned == 0 {
		// No host has finished a request: the fleet's speed is unknown,
		// and a guess could refuse requests that would start at once.
		// Estimate nothing (waiters are still bounded by MaxWait).
		cp.throughput = math.Inf(1)
	} else {
		prior /= float64(learned)
	}
	var idle, inFlight, room int64
	for _, u := range hosts {
		if !u.Available(now) {
			continue
		}
		cp.hosts++
		slots := u.Slots()
		if slots == 0 {
			cp.unbounded = true
			continue
		}
		cp.fleet += slots
		// The slots are counted whole, not less the jobs the host runs
		// for others (async workers, other replicas): async workers wait
		// for a slot inside their job and keep every slot busy under a
		// backlog, so subtracting them would hold synchronous requests
		// here until they time out. Those jobs share the host's own slot
		// queue with ours instead, which is fair across users as well
		// (gpusvc's capacity package).
		//
		// A slot is free when this replica has fewer requests on the host
		// than it has slots. Free slots are counted per host, not as the
		// fleet's slots less our requests: the balancer (EEFT) may queue a
		// request at a fast busy host rather than start it on a slow idle
		// one, and counting that request against the slow host's slot
		// left it idle while requests waited here (a fleet of speeds 1, 1,
		// 0.5, 0.25 at 80 % load lost a quarter of its capacity and
		// TestRealTimeSpeeds's p50 went from 44 ms to 738 ms;
		// TestFreeSlotsCountedPerHost).
		n := u.InFlight()
		inFlight += n
		idle += max(slots-n, 0)
		room += max(slots+u.QueueSize()-n, 0)
		spu := u.SecPerUnit()
		if spu == 0 && learned > 0 {
			spu = prior
			if w := u.Weight(); w > 0 {
				spu /= w
			}
		}
		if learned > 0 {
			cp.throughput += float64(slots) / spu
		}
	}
	// Requests granted but not yet sent have no host yet: they take free
	// slots too.
	pending := max(int64(c.running)-inFlight, 0)
	cp.free = int(idle - pending)
	cp.room = int(room - pending)
	return cp
}

// userCap is the most requests one user may run while others wait.
func (c *Controller) userCap(cp capacity) int {
	if c.q.fifo || cp.unbounded {
		return 0
	}
	return max(int(c.cfg.UserShare*float64(cp.fleet)), 1)
}

// dispatch serves waiters while slots are free. c.mu is held.
func (c *Controller) dispatch(now time.Time) {
	if c.q.heap.Len() == 0 {
		return
	}
	cp := c.capacity(now)
	open := cp.unbounded || cp.hosts == 0
	userCap := c.userCap(cp)
	room := cp.room
	for free := cp.free; open || free > 0; free-- {
		w := c.q.pop(userCap)
		if w == nil {
			return
		}
		c.serve(w)
		room--
	}
	if c.q.fifo {
		return
	}
	// Idle users go on into the hosts' own queues (see the package doc).
	for ; room > 0; room-- {
		w := c.q.popIdle()
		if w == nil {
			return
		}
		c.serve(w)
	}
}

// serve grants w and wakes it. c.mu is held.
func (c *Controller) serve(w *waiter) {
	c.grant(w.user, w.work)
	w.granted = true
	close(w.ready)
}

// mayPass reports whether u's request may go at once, without queueing:
// when nobody waits and a slot is free (and u is under the cap), or when u
// is idle and some host's own queue has room. c.mu is held.
func (c *Controller) mayPass(u *user, cp capacity) bool {
	if cp.unbounded || cp.hosts == 0 {
		return c.q.heap.Len() == 0
	}
	if c.q.heap.Len() == 0 && cp.free > 0 && c.q.eligible(u, c.userCap(cp)) {
		return true
	}
	return !c.q.fifo && u.idle() && cp.room > 0
}

// grant counts one request of u with work as running. c.mu is held.
func (c *Controller) grant(u *user, work float64) {
	c.running++
	c.runningWork += work
	u.running++
}

// estimate returns the expected wait of a request with workAhead queued
// before it; 0 while the fleet's speed is unknown.
func (c *Controller) estimate(cp capacity, workAhead float64) time.Duration {
	if cp.throughput <= 0 {
		return 0
	}
	s := (workAhead + c.runningWork/2) / cp.throughput
	return time.Duration(min(s, 1e6) * float64(time.Second))
}

// Admit waits until the request r of the given work (units) may be sent.
// It returns a Ticket to release with Done, a *Refusal when the request may
// not wait (queue full, estimated start past MaxWait, or MaxWait passed),
// or ctx's error when ctx ended first (the request left the queue).
func (c *Controller) Admit(ctx context.Context, r *http.Request, work float64) (Ticket, error) {
	key := c.key(r)
	now := c.deps.Now()
	c.mu.Lock()
	u := c.q.user(key)
	cp := c.capacity(now)
	if c.mayPass(u, cp) {
		// The fast path: no Redis, no queue. The request still takes its
		// tags, so a user who filled the fleet this way queues behind
		// those who did not.
		c.q.order.Charge(u.key, work)
		c.grant(u, work)
		c.mu.Unlock()
		return Ticket{c: c, u: u, work: work, once: &sync.Once{}}, nil
	}
	pos, workAhead := c.q.ahead(c.q.order.Peek(u.key, work))
	pos++
	est := c.estimate(cp, workAhead)
	var refuse *Refusal
	switch {
	case c.q.heap.Len() >= c.cfg.QueueMax:
		refuse = &Refusal{Reason: ReasonQueueFull, Message: fmt.Sprintf(
			"GPU fleet busy: the wait queue is full (%d requests), retry later", c.q.heap.Len())}
	case est > c.cfg.MaxWait:
		refuse = &Refusal{Reason: ReasonDeadline, Message: fmt.Sprintf(
			"GPU fleet busy: estimated start in %s s is past the %s s wait limit, retry later",
			seconds(est), seconds(c.cfg.MaxWait))}
	}
	if refuse != nil {
		c.q.forget(u)
		c.mu.Unlock()
		refuse.Position, refuse.EstimatedStart = pos, est
		refuse.RetryAfter = retryAfter(est - c.cfg.MaxWait)
		c.metrics.refused(refuse.Reason)
		return Ticket{}, refuse
	}
	w := &waiter{user: u, work: work, arrived: now.UnixNano(), ready: make(chan struct{})}
	c.q.push(w)
	c.dispatch(now)
	granted := w.granted
	c.mu.Unlock()

	t := Ticket{c: c, u: u, work: work, once: &sync.Once{}, Position: pos, EstimatedStart: est}
	if granted {
		return t, nil
	}
	t.Waited = true
	timer := time.NewTimer(c.cfg.MaxWait)
	defer timer.Stop()
	var err error
	select {
	case <-w.ready:
		c.metrics.waited(c.label(u), c.deps.Now().Sub(now))
		return t, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = &Refusal{Reason: ReasonTimeout, Position: pos, EstimatedStart: est,
			Message:    fmt.Sprintf("GPU fleet busy: no slot freed within %s s, retry later", seconds(c.cfg.MaxWait)),
			RetryAfter: retryAfter(0)}
	}
	c.mu.Lock()
	if w.granted {
		// Served as it gave up: pass the slot on.
		c.release(u, work)
		c.dispatch(c.deps.Now())
	} else {
		c.q.remove(w)
	}
	c.mu.Unlock()
	if r, ok := err.(*Refusal); ok {
		c.metrics.refused(r.Reason)
	}
	return Ticket{}, err
}

// retryAfter rounds d up to whole seconds within [1 s, 60 s].
func retryAfter(d time.Duration) time.Duration {
	s := math.Ceil(d.Seconds())
	return time.Duration(min(max(s, 1), 60)) * time.Second
}

// Run serves waiters when capacity grows without a request finishing
// (every 100 ms) and, when Redis is configured, syncs the counts with Redis
// (every SyncInterval), until ctx ends; then it returns nil. The two loops
// run side by side and meet only under c.mu, so a slow Redis round trip
// does not hold back the dispatch.
func (c *Controller) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if c.deps.Redis != nil {
		wg.Go(func() { clock.Every(ctx, c.cfg.SyncInterval, c.Sync) })
	}
	clock.Every(ctx, 100*time.Millisecond, func(context.Context) {
		c.mu.Lock()
		c.dispatch(c.deps.Now())
		c.mu.Unlock()
	})
	wg.Wait()
	return nil
}

func (c *Controller) queueLength() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return float64(c.q.heap.Len())
}

// UserStatus is one user's line in Snapshot.
type UserStatus struct {
	User           string  `json:"user"`
	Waiting        int     `json:"waiting"`
	InFlight       int     `json:"in_flight"`
	RemoteInFlight int     `json:"remote_in_flight"`
	RemoteWaiting  int     `json:"remote_waiting"`
	WaitSeconds    float64 `json:"longest_wait_seconds"`
}

// Snapshot is the queue's state for the console and GET /admin/hosts.
type Snapshot struct {
	Policy   string `json:"policy"`
	Waiting  int    `json:"waiting"`
	InFlight int    `json:"in_flight"`
	// FreeSlots is -1 when some host reports no slots (no queueing).
	FreeSlots int          `json:"free_slots"`
	UserCap   int          `json:"user_cap"`
	MaxWait   float64      `json:"max_wait_seconds"`
	Users     []UserStatus `json:"users"`
}

// Snapshot returns the queue's state at now, users with the most waiting
// first.
func (c *Controller) Snapshot() Snapshot {
	now := c.deps.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	cp := c.capacity(now)
	s := Snapshot{Policy: c.cfg.Policy, Waiting: c.q.heap.Len(), InFlight: c.running, FreeSlots: max(cp.free, 0),
		UserCap: c.userCap(cp), MaxWait: c.cfg.MaxWait.Seconds()}
	if cp.unbounded {
		s.FreeSlots = -1
	}
	oldest := map[*user]int64{}
	for _, w := range c.q.heap.All() {
		if o, ok := oldest[w.user]; !ok || w.arrived < o {
			oldest[w.user] = w.arrived
		}
	}
	for _, u := range c.q.users {
		if u.waiting+u.running+u.remoteRunning+u.remoteWaiting == 0 {
			continue
		}
		us := UserStatus{User: u.key, Waiting: u.waiting, InFlight: u.running,
			RemoteInFlight: u.remoteRunning, RemoteWaiting: u.remoteWaiting}
		if o, ok := oldest[u]; ok {
			us.WaitSeconds = math.Round(float64(now.UnixNano()-o)/1e7) / 100
		}
		s.Users = append(s.Users, us)
	}
	sort.Slice(s.Users, func(i, j int) bool {
		a, b := s.Users[i], s.Users[j]
		if a.Waiting != b.Waiting {
			return a.Waiting > b.Waiting
		}
		if a.InFlight != b.InFlight {
			return a.InFlight > b.InFlight
		}
		return a.User < b.User
	})
	return s
}
