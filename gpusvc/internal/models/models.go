// Package models is the model registry: it maps a request's model_id to
// the inference backend that serves it, the backend's own model name and
// the operations the model may be used for, from the `models` table
// (migration 00006).
//
// A row names its backend explicitly, or leaves it NULL to follow the
// host's default backend (INFERENCE_BACKEND); ids with no row (and the
// empty id) also go to the default backend, with its default model. This
// is how the local stack serves the legacy ids with the built-in nouns
// backend while production rows point them at A1111 or Replicate.
//
// This package must never run inference itself and never cache rows across
// requests (an operator's UPDATE takes effect on the next request).
package models

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/apperr"
)

// MaxIDLen bounds a model_id (the column is VARCHAR(128)).
const MaxIDLen = 128

// Model is one row of the models table.
type Model struct {
	// ID is the public model_id.
	ID string
	// Backend is the explicit backend name; "" follows the default backend.
	Backend string
	// BackendModel is the backend's own model name; "" means its default.
	// It is used only when Backend is set.
	BackendModel string
	// Capabilities restricts the operations; nil means every operation the
	// backend offers.
	Capabilities []inference.Op
	// Description is free text for GET /models.
	Description string
	// Enabled is false for rows an operator switched off.
	Enabled bool
}

// Store reads the models table.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store over pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const modelColumns = `model_id, COALESCE(backend, ''), COALESCE(backend_model, ''), capabilities, description, enabled`

func scanModel(row pgx.Row) (Model, error) {
	var m Model
	var caps []string
	if err := row.Scan(&m.ID, &m.Backend, &m.BackendModel, &caps, &m.Description, &m.Enabled); err != nil {
		return Model{}, err
	}
	if caps != nil {
		m.Capabilities = make([]inference.Op, 0, len(caps))
		for _, c := range caps {
			m.Capabilities = append(m.Capabilities, inference.Op(c))
		}
	}
	return m, nil
}

// Get returns the row for id; ok is false when there is none.
func (s *Store) Get(ctx context.Context, id string) (m Model, ok bool, err error) {
	m, err = scanModel(s.pool.QueryRow(ctx, `SELECT `+modelColumns+` FROM models WHERE model_id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Model{}, false, nil
	}
	if err != nil {
		return Model{}, false, fmt.Errorf("get model %q: %w", id, err)
	}
	return m, true, nil
}

// List returns every row, by model_id.
func (s *Store) List(ctx context.Context) ([]Model, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+modelColumns+` FROM models ORDER BY model_id`)
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Model, error) { return scanModel(r) })
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	return out, nil
}

// Registry resolves model ids to backends. It is safe for concurrent use.
type Registry struct {
	store     *Store
	backends  map[string]inference.Backend
	def       string
	defModels map[string]string
}

// NewRegistry returns a Registry over store. backends are the backends this
// host has, by name; def names the default one (it must be in backends).
// defModels gives, per backend name, the model name used when a request
// resolves to that backend without one ("" lets the backend choose).
func NewRegistry(store *Store, backends map[string]inference.Backend, def string, defModels map[string]string) (*Registry, error) {
	if backends[def] == nil {
		return nil, fmt.Errorf("model registry: default backend %q is not configured", def)
	}
	return &Registry{store: store, backends: backends, def: def, defModels: defModels}, nil
}

// DefaultBackend returns the name of the default backend.
func (r *Registry) DefaultBackend() string { return r.def }

// Backends returns the configured backend names, sorted.
func (r *Registry) Backends() []string {
	names := make([]string, 0, len(r.backends))
	for n := range r.backends {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Route is a resolved model: the backend to call and what to call it with.
type Route struct {
	// ModelID is the requested id ("" when the request named none).
	ModelID string
	// Known is true when ModelID has a row.
	Known bool
	// Backend serves the request.
	Backend inference.Backend
	// BackendModel is passed as the backend's model name.
	BackendModel string
	// capabilities is the row's restriction (nil = none).
	capabilities []inference.Op
}

// Supports reports whether the route offers op: the backend must, and the
// row's capabilities (if any) must list it.
func (rt Route) Supports(op inference.Op) bool {
	if !rt.Backend.Supports(op) {
		return false
	}
	return rt.capabilities == nil || slices.Contains(rt.capabilities, op)
}

// Check returns a 501 *apperr.Error naming the operation, the model and the
// backend when the route does not offer op.
func (rt Route) Check(op inference.Op) error {
	if rt.Supports(op) {
		return nil
	}
	name := rt.Backend.Name()
	if rt.Backend.Supports(op) {
		return apperr.Unsupported(fmt.Sprintf("%s is not offered by model %s (backend %s)", op, rt.ModelID, name)).
			WithField("operation", string(op)).WithField("backend", name)
	}
	return apperr.Unsupported(fmt.Sprintf("%s is not supported by the %s backend", op, name)).
		WithField("operation", string(op)).WithField("backend", name)
}

// Ops returns the operations the route offers, in inference.AllOps order.
func (rt Route) Ops() []inference.Op {
	var ops []inference.Op
	for _, op := range inference.AllOps {
		if rt.Supports(op) {
			ops = append(ops, op)
		}
	}
	return ops
}

// Resolve returns the route for id. A disabled row is 404; a row naming a
// backend this host does not have is 503 (another host may have it).
func (r *Registry) Resolve(ctx context.Context, id string) (Route, error) {
	id = strings.TrimSpace(id)
	if len(id) > MaxIDLen {
		return Route{}, apperr.Invalid(fmt.Sprintf("model_id must be at most %d characters", MaxIDLen))
	}
	if id == "" {
		return r.defaultRoute(id, false, nil), nil
	}
	m, ok, err := r.store.Get(ctx, id)
	if err != nil {
		return Route{}, err
	}
	if !ok {
		return r.defaultRoute(id, false, nil), nil
	}
	return r.route(m)
}

func (r *Registry) defaultRoute(id string, known bool, caps []inference.Op) Route {
	return Route{ModelID: id, Known: known, Backend: r.backends[r.def], BackendModel: r.defModels[r.def], capabilities: caps}
}

func (r *Registry) route(m Model) (Route, error) {
	if !m.Enabled {
		return Route{}, apperr.NotFound(fmt.Sprintf("model %s is disabled", m.ID))
	}
	if m.Backend == "" {
		return r.defaultRoute(m.ID, true, m.Capabilities), nil
	}
	b := r.backends[m.Backend]
	if b == nil {
		return Route{}, apperr.Unavailable(fmt.Sprintf("model %s needs the %s backend, which this host does not run", m.ID, m.Backend)).
			WithField("backend", m.Backend)
	}
	name := m.BackendModel
	if name == "" {
		name = r.defModels[m.Backend]
	}
	return Route{ModelID: m.ID, Known: true, Backend: b, BackendModel: name, capabilities: m.Capabilities}, nil
}

// Listing is one model as GET /models and /health show it.
type Listing struct {
	ID          string
	Backend     string
	Available   bool
	Operations  []inference.Op
	Description string
}

// List returns every enabled model with the operations it offers on this
// host; a model whose backend this host lacks is listed as unavailable.
func (r *Registry) List(ctx context.Context) ([]Listing, error) {
	ms, err := r.store.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Listing, 0, len(ms))
	for _, m := range ms {
		if !m.Enabled {
			continue
		}
		l := Listing{ID: m.ID, Backend: m.Backend, Description: m.Description, Operations: []inference.Op{}}
		if l.Backend == "" {
			l.Backend = r.def
		}
		if rt, err := r.route(m); err == nil {
			l.Available = true
			l.Operations = rt.Ops()
		}
		out = append(out, l)
	}
	return out, nil
}
