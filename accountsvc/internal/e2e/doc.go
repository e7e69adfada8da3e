// Package e2e holds the end-to-end tests of the whole stack: accountsvc
// served in-process, and the proxy and a gpusvc started as real binaries
// (built once per test binary), all on :0 ports over one fresh database, one
// Redis key prefix and one storage folder. Each scenario runs through the
// proxy and directly against the service behind it, with the legacy
// frontend's request bodies.
//
// Its only non-test code is Start, which runs a service binary for the
// length of a test (librarytest uses it to put a proxy in front of the
// library API). This package is for tests only and must never be imported
// by production code.
package e2e
