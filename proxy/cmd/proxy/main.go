// Command proxy is the public entry (proxy.nounsai.wtf): it balances
// generation requests across the GPU hosts listed in api_hosts and forwards
// every other route to accountsvc. `proxy migrate` applies the database
// migrations and exits; `proxy healthcheck` probes a running instance's
// /health (for container HEALTHCHECKs).
package main

import (
	"github.com/nounsai/sdserver/proxy/internal/app"
	"github.com/nounsai/sdserver/shared/service"
)

func main() {
	service.Main(service.Binary[app.Config, *app.App]{
		Name: "proxy",
		Load: app.LoadConfig,
		New:  app.Open,
	})
}
