// Command gpusvc serves image generation and the model routes on one GPU
// host (one process per GPU) and runs the workers for long audio and video
// jobs. `gpusvc migrate` applies the database migrations and exits;
// `gpusvc healthcheck` probes a running instance's /health.
package main

import (
	"github.com/nounsai/sdserver/gpusvc/internal/app"
	"github.com/nounsai/sdserver/shared/service"
)

func main() {
	service.Main(service.Binary[app.Config, *app.App]{
		Name: "gpusvc",
		Load: app.LoadConfig,
		New:  app.New,
	})
}
