// Package admission decides when a GPU request may go to the fleet: at once
// while the fleet has a free slot, otherwise after a short, bounded wait in
// a queue that is fair across users and work-conserving.
//
// # Capacity
//
// The fleet's capacity is the sum, over the available GPU hosts, of the
// slots each reported in its last /health; this replica keeps at most that
// many GPU requests in flight. Jobs the hosts run for others (async River
// workers, other proxy replicas) are not subtracted: they share each host's
// own bounded queue with these requests, as before admission (async
// workers wait for a slot inside their job and would otherwise keep the
// proxy's view of the fleet full under a backlog); that queue is itself
// fair across users (gpusvc/internal/capacity), so a light user's request
// that lands behind a heavy user's async work still takes the host's next
// free slot.
//
// # Idle users go straight to a host's queue
//
// A user with nothing running (on any replica, as last synced) does not
// wait here while a host's own bounded queue (queue_size in its /health)
// has a place this replica has not taken: the request goes at once, and
// the host's fair queue serves it at that host's next free slot. Waiting
// here first would make it wait twice: here until a slot's release
// notice, then at the host, where the released slot has already gone to a
// job that was waiting there (an async job, or another replica's
// request). bench-fairness measured that double wait as the light users'
// p99 (1.92 s against 1.5 s allowed with 1 s jobs). Such a user's next
// request, and everything under Policy "fifo", waits as described below;
// so do idle users once the hosts' queues are taken, until a place frees.
// A host that reports no slots (a legacy host) makes the capacity
// unbounded: admission then
// never queues and the host's own queue decides, as before. With no
// available host at all, requests pass at once and the data path answers
// 503 "no healthy upstream" as before.
//
// A request holds its place in flight until its host's slot notice
// (gpuroute.SlotNoticeHeader: gpusvc answers 103 when the request's GPU
// slot frees), not until the answer ends: the host encodes, stores and
// answers on the CPU while the next request already holds the slot. A host
// that sends no notice keeps the place until the answer, as before.
//
// # Fair order: start-time fair queueing
//
// Each waiter gets a virtual start tag S = max(V, F_user) and a finish tag
// F = S + work / weight, where V is the start tag of the waiter served last
// (the virtual time), F_user the finish tag of the user's previous request
// and work the request's work units (balancer.EstimatePrefix over the
// shared/gpuroute cost table: a 4-sample image weighs four 1-sample ones).
// Every user has weight 1. When a slot frees, the waiter with the smallest
// start tag is served (ties in arrival order). A user who floods the queue
// pushes only their own tags forward, so a light user's single request is
// served next; an idle user earns no credit (S is never below V). With
// Policy "fifo" the same queue is served in arrival order without the cap,
// for comparison.
//
// # Per-user cap
//
// While any other user is waiting (on this replica or, as last synced, on
// another), a user whose in-flight requests across all replicas reach
// UserShare of the fleet's reported slots is passed over. A lone user gets
// every idle slot.
//
// # Users
//
// A user is the `id` of the HS256 JWT in Authorization (raw or "Bearer"),
// with its signature and expiry checked against JWT_SECRET but not its
// revocation: the key only orders requests, and gpusvc still verifies every
// token in full. A request without a valid token is keyed by its client IP
// (ratelimit.ClientIP with TRUSTED_PROXIES), IPv6 per /64
// (ratelimit.IPSubject).
//
// # Bounds
//
// The queue holds at most QueueMax waiters, and nobody waits longer than
// MaxWait. A request whose estimated start (the work ahead of it plus half
// the running work, over the fleet's throughput from the hosts' learned
// seconds per unit) is past MaxWait is refused at once with a *Refusal
// (503 with Retry-After), not after waiting. Until some host has learned its
// speed nothing is estimated, and waiters are bounded by MaxWait alone. A
// client that goes away leaves the queue.
//
// # Several proxy replicas
//
// Each replica runs its own queue. Every SyncInterval it writes its
// per-user in-flight and waiting counts to a Redis hash of its own (with a
// TTL of three intervals, so a dead replica's counts vanish), registers
// itself in a sorted set of live replicas, and reads the others' hashes.
// The cap compares a user's local plus remote in-flight count, and remote
// waiters switch the cap on. Nothing touches Redis per request. When Redis
// fails the replica forgets the remote counts and goes on alone (fail open,
// counted in redis_fail_open_total{use="admission"} once per failed sync).
// Replicas see each other with a delay of up to one sync interval: fair
// enough without a central lock. With N replicas a host may get up to N
// times its slots; its own queue (GPU_QUEUE, 503 beyond) absorbs that.
//
// This package never writes HTTP responses, logs, or forwards requests; it
// only reads request headers to key the user.
package admission
