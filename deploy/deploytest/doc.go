// Package deploytest checks the operator-facing files in deploy/ (systemd
// units, Dockerfiles, the compose file, Kubernetes manifests, monitoring
// configuration) against the code they deploy: every YAML file parses, the
// Kubernetes objects decode strictly into the Kubernetes API types, the
// Dockerfiles build packages that exist, the settings named in the examples
// are settings the binaries read, the dashboards query metrics the code
// exports, and every secret value written in deploy/, scripts/ and bench/ is
// on config.ShippedSecrets (which production refuses). It lives in the
// workspace module deploy/, next to what it checks, and holds tests only;
// nothing may import it.
package deploytest
