package libraryapi

import (
	"context"
	"sync"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/storage"
)

// cleaner deletes storage objects whose rows are already gone. Failures are
// logged: the row change has committed, and an orphaned object is harmless,
// whereas a row pointing at a missing object is not.
type cleaner struct {
	storage storage.Store
	log     *zap.Logger
	wg      sync.WaitGroup
}

// now deletes objs before returning (DELETE routes: the caller expects the
// objects gone when it gets its answer).
func (c *cleaner) now(ctx context.Context, objs []storage.Object) {
	storage.DeleteOrphans(ctx, c.storage, objs, c.log)
}

// later deletes objs in the background (re-queueing a project: the old
// render is no longer needed, and the request must not wait on the CDN;
// legacy C13). API.Wait waits for it.
func (c *cleaner) later(ctx context.Context, objs []storage.Object) {
	if len(objs) == 0 {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.now(ctx, objs)
	}()
}
