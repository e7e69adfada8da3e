// Package apihost registers this gpusvc in the proxy's host registry (the
// api_hosts table, migration 00007): on start it inserts its public address
// or clears the draining flag of an existing row, and on shutdown it sets
// draining so the proxies stop sending it new requests while it finishes
// the ones it has.
//
// This package must never delete a row or change enabled/weight: those
// belong to the operator.
package apihost

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Registrar registers one address.
type Registrar struct {
	pool    *pgxpool.Pool
	address string
}

// New returns a Registrar for address (e.g. "http://10.0.0.7:8091").
func New(pool *pgxpool.Pool, address string) *Registrar {
	return &Registrar{pool: pool, address: address}
}

// Register inserts the address, or marks an existing row as not draining.
func (r *Registrar) Register(ctx context.Context) error {
	_, err := r.pool.Exec(ctx, `INSERT INTO api_hosts (address) VALUES ($1)
		ON CONFLICT (address) DO UPDATE SET draining = false`, r.address)
	if err != nil {
		return fmt.Errorf("register api host %q: %w", r.address, err)
	}
	return nil
}

// Drain marks the address as draining (no new requests).
func (r *Registrar) Drain(ctx context.Context) error {
	if _, err := r.pool.Exec(ctx, `UPDATE api_hosts SET draining = true WHERE address = $1`, r.address); err != nil {
		return fmt.Errorf("drain api host %q: %w", r.address, err)
	}
	return nil
}
