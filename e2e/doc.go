// Package e2e holds the end-to-end tests of the whole stack: accountsvc,
// one gpusvc and the proxy started as real binaries (built once per test
// binary), all on :0 ports over one fresh database, one Redis key prefix and
// one storage folder. Each scenario runs through the proxy and directly
// against the service behind it, with the legacy frontend's request bodies.
//
// It is its own module in the go.work workspace so that no service module
// carries whole-stack scaffolding. It holds tests only.
package e2e
