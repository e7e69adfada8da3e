package console

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nounsai/sdserver/proxy/internal/admission"
	"github.com/nounsai/sdserver/proxy/internal/balancer"
)

// hostRow is one upstream as the hosts table shows it.
type hostRow struct {
	ID          int64
	Address     string
	State       string
	Healthy     bool
	Weight      string
	InFlight    int64
	Outstanding string
	Capacity    string // "in_flight/slots" as the host reported, or "—"
	Queued      string // queue the host reported, or "—"
	Latency     string
	SecPerUnit  string
	Requests    uint64
	Errors5xx   uint64
	Timeouts    uint64
	Failures    uint64
	ConsecFails int64
	LastCheck   string
	LastCheckAt string
	CheckError  string
	Draining    bool
	// Drainable is true for api_hosts rows (configured hosts have no row).
	Drainable bool
	// CSRF is the token the drain form posts.
	CSRF string
}

// hostsView is the data of the hosts fragment.
type hostsView struct {
	Policy   string
	GPU      []hostRow
	Account  []hostRow
	Up       int
	InFlight int64
	Queued   int64
	CSRF     string
	At       string
	// Queue is the admission queue; nil when the proxy has none.
	Queue *admission.Snapshot
}

const dash = "—"

func newHostRows(p *balancer.Pool, csrf string, now time.Time) []hostRow {
	hosts := p.Hosts()
	out := make([]hostRow, 0, len(hosts))
	for _, u := range hosts {
		s := u.Status(now)
		r := hostRow{
			ID:          s.ID,
			Address:     s.Address,
			State:       s.State,
			Healthy:     s.Healthy,
			Weight:      strconv.FormatFloat(s.Weight, 'g', 4, 64),
			InFlight:    s.InFlight,
			Outstanding: strconv.FormatFloat(s.Outstanding, 'f', 1, 64),
			Capacity:    dash,
			Queued:      dash,
			Latency:     dash,
			SecPerUnit:  dash,
			Requests:    s.Requests,
			Errors5xx:   s.Errors5xx,
			Timeouts:    s.Timeouts,
			Failures:    s.Failures,
			ConsecFails: s.ConsecFails,
			LastCheck:   "never",
			CheckError:  s.LastCheckFail,
			Draining:    u.Draining(),
			Drainable:   s.ID > 0 && s.State != "removed",
			CSRF:        csrf,
		}
		if s.Slots > 0 {
			r.Capacity = fmt.Sprintf("%d/%d", s.RepInFlight, s.Slots)
			r.Queued = strconv.FormatInt(s.RepQueued, 10)
		}
		if s.LatencyEWMA > 0 {
			r.Latency = fmt.Sprintf("%.2f s", s.LatencyEWMA)
		}
		if s.SecPerUnit > 0 {
			r.SecPerUnit = fmt.Sprintf("%.3g", s.SecPerUnit)
		}
		if !s.LastCheck.IsZero() {
			r.LastCheck = fmt.Sprintf("%.1f s ago", max(now.Sub(s.LastCheck), 0).Seconds())
			r.LastCheckAt = s.LastCheck.UTC().Format(time.RFC3339Nano)
		}
		out = append(out, r)
	}
	return out
}

func newHostsView(policy string, gpu, account *balancer.Pool, csrf string, now time.Time) hostsView {
	v := hostsView{
		Policy:  policy,
		GPU:     newHostRows(gpu, csrf, now),
		Account: newHostRows(account, "", now),
		CSRF:    csrf,
		At:      now.UTC().Format("15:04:05 UTC"),
	}
	for _, r := range v.GPU {
		if r.State == "up" {
			v.Up++
		}
		v.InFlight += r.InFlight
	}
	for _, u := range gpu.Hosts() {
		v.Queued += u.Status(now).RepQueued
	}
	return v
}

// jobTable is a kind × state table of counts.
type jobTable struct {
	Present bool
	States  []string
	Rows    []jobRow
	Totals  []int64
}

// jobRow is one kind's counts, in the order of jobTable.States.
type jobRow struct {
	Kind   string
	Counts []int64
}

// jobsView is the data of the jobs fragment.
type jobsView struct {
	River jobTable
	Jobs  jobTable
	Error string
	At    string
}

// riverStates are River's job states in the order of a job's life.
var riverStates = []string{"available", "scheduled", "pending", "running", "retryable", "completed", "cancelled", "discarded"}

// activeJobStates are the jobs table states the console counts.
var activeJobStates = []string{"QUEUED", "PROCESSING"}

// pivot turns counts into a kind × state table with the states in order
// (any state not in it is appended).
func pivot(present bool, states []string, counts []JobCount) jobTable {
	t := jobTable{Present: present, States: slices.Clone(states)}
	col := make(map[string]int, len(states))
	for i, s := range t.States {
		col[s] = i
	}
	for _, c := range counts {
		if _, ok := col[c.State]; !ok {
			col[c.State] = len(t.States)
			t.States = append(t.States, c.State)
		}
	}
	byKind := map[string]int{}
	for _, c := range counts {
		i, ok := byKind[c.Kind]
		if !ok {
			i = len(t.Rows)
			byKind[c.Kind] = i
			t.Rows = append(t.Rows, jobRow{Kind: c.Kind})
		}
		t.Rows[i].Counts = append(t.Rows[i].Counts, make([]int64, len(t.States)-len(t.Rows[i].Counts))...)
		t.Rows[i].Counts[col[c.State]] += c.Count
	}
	t.Totals = make([]int64, len(t.States))
	for i := range t.Rows {
		t.Rows[i].Counts = append(t.Rows[i].Counts, make([]int64, len(t.States)-len(t.Rows[i].Counts))...)
		for j, n := range t.Rows[i].Counts {
			t.Totals[j] += n
		}
	}
	slices.SortFunc(t.Rows, func(a, b jobRow) int { return strings.Compare(a.Kind, b.Kind) })
	return t
}

func newJobsView(c JobCounts, now time.Time) jobsView {
	return jobsView{
		River: pivot(c.RiverTable, riverStates, c.River),
		Jobs:  pivot(c.JobsTable, activeJobStates, c.Jobs),
		At:    now.UTC().Format("15:04:05 UTC"),
	}
}
