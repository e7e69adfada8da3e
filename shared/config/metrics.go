package config

import (
	"fmt"
	"net"
	"strconv"
)

// MetricsOff is the METRICS_ADDR value that turns the metrics listener off.
const MetricsOff = "off"

// metricsPortOffset is how far above the HTTP port the default metrics
// listener sits (":8080" serves its metrics on 127.0.0.1:9080).
const metricsPortOffset = 1000

// LoadMetricsAddr reads METRICS_ADDR, the internal listener that serves
// GET /metrics (kept off the public port, docs/security.md). Unset, it is
// DefaultMetricsAddr(httpAddr); "off" returns "" (no metrics listener). A
// bad value is reported by l.Err, naming METRICS_ADDR.
func LoadMetricsAddr(l *Loader, httpAddr string) string {
	v := l.String("METRICS_ADDR", "", "")
	switch v {
	case MetricsOff:
		return ""
	case "":
		def, err := DefaultMetricsAddr(httpAddr)
		if err != nil {
			l.fail("METRICS_ADDR", err)
		}
		return def
	}
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		l.fail("METRICS_ADDR", fmt.Errorf("must be host:port or %q, got %q", MetricsOff, v))
		return ""
	}
	if v == httpAddr {
		l.fail("METRICS_ADDR", fmt.Errorf("must differ from HTTP_ADDR %q (metrics stay off the public listener)", httpAddr))
		return ""
	}
	return v
}

// DefaultMetricsAddr returns the loopback address at httpAddr's port plus
// 1000 ("0.0.0.0:8080" gives "127.0.0.1:9080"); port 0 (tests) stays 0, a
// port chosen by the kernel.
func DefaultMetricsAddr(httpAddr string) (string, error) {
	_, p, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return "", fmt.Errorf("no default from HTTP_ADDR %q: %w", httpAddr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", fmt.Errorf("no default from HTTP_ADDR %q: bad port", httpAddr)
	}
	if port != 0 {
		port += metricsPortOffset
	}
	if port > 65535 {
		return "", fmt.Errorf("HTTP_ADDR port %s + %d is above 65535; set METRICS_ADDR", p, metricsPortOffset)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}
