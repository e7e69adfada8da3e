module github.com/nounsai/sdserver/accountsvc

go 1.26.8

require github.com/nounsai/sdserver/shared v0.0.0

require (
	github.com/go-crypt/crypt v0.4.15 // indirect
	github.com/go-crypt/x v0.4.17 // indirect
	golang.org/x/sys v0.50.0 // indirect
)

replace github.com/nounsai/sdserver/shared => ../shared
