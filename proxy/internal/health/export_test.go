package health

import "context"

// CheckOnce checks every host once, concurrently, and applies the results
// (tests only; never concurrently with Run).
func (c *Checker) CheckOnce(ctx context.Context) { c.check(ctx, false) }
