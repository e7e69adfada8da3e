package stack

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Metric sums the samples of the Prometheus metric name on svc's
// GET /metrics whose labels contain every one of labels (each written
// as `key="value"`).
func Metric(ctx context.Context, svc *Service, name string, labels ...string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, svc.URL()+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("metrics of %s: %w", svc.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics of %s: status %d", svc.Name, resp.StatusCode)
	}
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
lines:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue // another metric with this prefix
		}
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				continue lines
			}
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, sc.Err()
}

// RSS is the resident memory in bytes of pid and its direct children
// (PostgreSQL's backends), from /proc/<pid>/status.
func RSS(pid int) (int64, error) {
	total, err := vmRSS(pid)
	if err != nil {
		return 0, err
	}
	for _, c := range children(pid) {
		n, _ := vmRSS(c)
		total += n
	}
	return total, nil
}

// Footprint is the memory in bytes that pid and its direct children hold on
// their own: the sum of their proportional set sizes without shared memory
// (Pss - Pss_Shmem, from /proc/<pid>/smaps_rollup). Unlike RSS it does not
// count PostgreSQL's shared buffers once per backend that touched them, nor
// libraries shared between processes more than once; it grows when a
// process's own heap grows.
func Footprint(pid int) (int64, error) {
	total, err := ownPSS(pid)
	if err != nil {
		return 0, err
	}
	for _, c := range children(pid) {
		n, _ := ownPSS(c)
		total += n
	}
	return total, nil
}

func children(pid int) []int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if c, err := strconv.Atoi(f); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// ownPSS is Pss minus Pss_Shmem of one process, in bytes.
func ownPSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fields := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "Pss" && name != "Pss_Shmem") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("smaps_rollup of pid %d: %w", pid, err)
		}
		fields[name] = kb << 10
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	pss, ok := fields["Pss"]
	if !ok {
		return 0, fmt.Errorf("no Pss for pid %d", pid)
	}
	return pss - fields["Pss_Shmem"], nil
}

func vmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}
