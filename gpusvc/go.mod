module github.com/nounsai/sdserver/gpusvc

go 1.26.8

require github.com/nounsai/sdserver/shared v0.0.0

require (
	github.com/stretchr/testify v1.12.1 // indirect
	go.uber.org/multierr v1.11.0 // indirect
	go.uber.org/zap v1.28.0 // indirect
	golang.org/x/crypto v0.59.0 // indirect
	golang.org/x/image v0.48.0 // indirect
)

replace github.com/nounsai/sdserver/shared => ../shared
