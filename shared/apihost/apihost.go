// Package apihost owns the api_hosts table (migration 00007), the registry
// of GPU hosts the proxies balance over. It is the only package with SQL
// for it: the proxy loads the rows and LISTENs for changes
// (proxy/internal/hosts), the proxy's console sets the drain flag, and each
// gpusvc registers its own address at start and drains it at shutdown
// (Registrar). The table's trigger NOTIFYs Channel on every change.
//
// This package must never delete a row or change enabled/weight on its
// own: those belong to the operator.
package apihost

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/db"
)

// Channel is the NOTIFY channel the api_hosts trigger signals.
const Channel = "api_hosts_changed"

// Row is one api_hosts row.
type Row struct {
	ID      int64
	Address string
	Enabled bool
	// Weight is the operator's share of traffic (0 takes none).
	Weight   float64
	Draining bool
}

// List returns every api_hosts row in id order.
func List(ctx context.Context, q db.Querier) ([]Row, error) {
	rows, err := q.Query(ctx, `
		SELECT id, address, enabled, weight, draining
		FROM api_hosts
		ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list api_hosts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Row, error) {
		var h Row
		var w float32
		err := row.Scan(&h.ID, &h.Address, &h.Enabled, &w, &h.Draining)
		h.Weight = float64(w)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("list api_hosts: %w", err)
	}
	return out, nil
}

// Listen subscribes conn (a dedicated connection, not a pooled one) to
// Channel; wait with conn.WaitForNotification.
func Listen(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return fmt.Errorf("listen %s: %w", Channel, err)
	}
	return nil
}

// SetDraining sets the drain flag of the host id (the console's edit). A
// missing id is NotFound "Host not found".
func SetDraining(ctx context.Context, q db.Querier, id int64, draining bool) error {
	tag, err := q.Exec(ctx, `UPDATE api_hosts SET draining = $2 WHERE id = $1`, id, draining)
	if err != nil {
		return fmt.Errorf("set draining=%t on api host %d: %w", draining, id, err)
	}
	if tag.RowsAffected() == 0 {
		return apperr.NotFound("Host not found")
	}
	return nil
}

// Registrar registers one gpusvc address.
type Registrar struct {
	db      db.Querier
	address string
}

// NewRegistrar returns a Registrar for address (e.g.
// "http://10.0.0.7:8091") on q (the pool).
func NewRegistrar(q db.Querier, address string) *Registrar {
	return &Registrar{db: q, address: address}
}

// Register inserts the address, or marks an existing row as not draining.
func (r *Registrar) Register(ctx context.Context) error {
	_, err := r.db.Exec(ctx, `INSERT INTO api_hosts (address) VALUES ($1)
		ON CONFLICT (address) DO UPDATE SET draining = false`, r.address)
	if err != nil {
		return fmt.Errorf("register api host %q: %w", r.address, err)
	}
	return nil
}

// Drain marks the address as draining (no new requests).
func (r *Registrar) Drain(ctx context.Context) error {
	if _, err := r.db.Exec(ctx, `UPDATE api_hosts SET draining = true WHERE address = $1`, r.address); err != nil {
		return fmt.Errorf("drain api host %q: %w", r.address, err)
	}
	return nil
}
