package library_test

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/storage"
	"github.com/nounsai/sdserver/shared/storage/bunnytest"
)

func newUser(t *testing.T, pool *pgxpool.Pool, email string) int64 {
	t.Helper()
	var id int64
	require.NoError(t, pool.QueryRow(context.Background(),
		`INSERT INTO users (email, password, metadata) VALUES ($1, 'x', '{}') RETURNING id`, email).Scan(&id))
	return id
}

func pngBytes(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	img := image.NewGray(image.Rect(0, 0, w, h))
	img.Pix[0] = byte(w)
	require.NoError(t, png.Encode(&buf, img))
	return buf.Bytes()
}

func setup(t *testing.T) (*pgxpool.Pool, *bunnytest.Server, *library.Images) {
	t.Helper()
	pool := dbtest.New(t)
	fake := bunnytest.New(t, map[string]string{"img": "ki", "vid": "kv"})
	st := storage.NewBunny(storage.BunnyConfig{BaseURL: fake.URL, Zones: map[storage.Kind]storage.Zone{
		storage.KindImage: {Name: "img", AccessKey: "ki"}, storage.KindVideo: {Name: "vid", AccessKey: "kv"},
	}}, nil)
	return pool, fake, library.NewImages(pool, st, zap.NewNop())
}

func TestCreateDedupDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, fake, imgs := setup(t)
	alice := newUser(t, pool, "alice@example.com")
	bob := newUser(t, pool, "bob@example.com")
	data := pngBytes(t, 300, 200)
	parent := int64(-1)

	im, created, err := imgs.Create(ctx, library.NewImage{UserID: alice, Data: data, IsLiked: true, ParentID: &parent,
		Metadata: map[string]any{"user_uploaded": true, "base_64": nil}})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, "0", im.Base64)
	require.JSONEq(t, `{"user_uploaded": true, "base_64": null}`, string(im.Metadata))
	full, ok := fake.Object("img", storage.ImageKey(alice, im.CDNID))
	require.True(t, ok)
	require.Equal(t, data, full, "the original bytes are stored")
	thumb, ok := fake.Object("img", storage.ThumbnailKey(alice, im.CDNID))
	require.True(t, ok)
	cfg, err := png.DecodeConfig(bytes.NewReader(thumb))
	require.NoError(t, err)
	require.Equal(t, [2]int{100, 67}, [2]int{cfg.Width, cfg.Height})

	// Same bytes, same user: the existing image, nothing uploaded.
	again, created, err := imgs.Create(ctx, library.NewImage{UserID: alice, Data: data})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, im.ID, again.ID)
	require.Equal(t, 2, fake.Count("img"))

	// Another user gets their own copy.
	bobs, created, err := imgs.Create(ctx, library.NewImage{UserID: bob, Data: data})
	require.NoError(t, err)
	require.True(t, created)
	require.NotEqual(t, im.ID, bobs.ID)

	// Bob cannot delete Alice's image, even by guessing ids.
	require.ErrorIs(t, imgs.Delete(ctx, bob, im.ID), library.ErrImageNotFound)
	_, err = imgs.Get(ctx, alice, im.ID)
	require.NoError(t, err)

	require.NoError(t, imgs.Delete(ctx, alice, im.ID))
	_, ok = fake.Object("img", storage.ImageKey(alice, im.CDNID))
	require.False(t, ok)
	_, ok = fake.Object("img", storage.ThumbnailKey(alice, im.CDNID))
	require.False(t, ok)
	_, err = imgs.Get(ctx, alice, im.ID)
	require.Equal(t, apperr.KindNotFound, apperr.KindOf(err))
	_, err = imgs.Get(ctx, bob, bobs.ID)
	require.NoError(t, err)
}

func TestCreateUploadFailureLeavesNoRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, fake, imgs := setup(t)
	alice := newUser(t, pool, "alice@example.com")

	fake.Fail(http.MethodPut, http.StatusInternalServerError)
	_, _, err := imgs.Create(ctx, library.NewImage{UserID: alice, Data: pngBytes(t, 10, 10)})
	require.Equal(t, apperr.KindBadGateway, apperr.KindOf(err))
	var n int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM images`).Scan(&n))
	require.Zero(t, n)

	// Not an image at all: Invalid, nothing uploaded.
	fake.Fail(http.MethodPut, 0)
	_, _, err = imgs.Create(ctx, library.NewImage{UserID: alice, Data: []byte("hello")})
	require.Equal(t, apperr.KindInvalid, apperr.KindOf(err))
	require.Zero(t, fake.Count("img"))
}

func TestCreateConcurrentDedup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _, imgs := setup(t)
	alice := newUser(t, pool, "alice@example.com")
	data := pngBytes(t, 20, 20)
	var wg sync.WaitGroup
	ids := make([]int64, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			im, _, err := imgs.Create(ctx, library.NewImage{UserID: alice, Data: data})
			if err == nil {
				ids[i] = im.ID
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		require.Equal(t, ids[0], id)
	}
}

func TestTemplateAndFrames(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, fake, imgs := setup(t)
	alice := newUser(t, pool, "alice@example.com")

	plain, _, err := imgs.Create(ctx, library.NewImage{UserID: alice, Data: pngBytes(t, 11, 11)})
	require.NoError(t, err)
	_, err = imgs.Template(ctx, plain.CDNID)
	require.Equal(t, apperr.KindNotFound, apperr.KindOf(err), "only template images are templates")
	require.NoError(t, imgs.MarkTemplate(ctx, alice, plain.ID))
	tpl, err := imgs.Template(ctx, plain.CDNID)
	require.NoError(t, err)
	require.Equal(t, plain.ID, tpl.ID)

	// Deleting a frame image deletes the video it belongs to, and its object.
	_, err = pool.Exec(ctx, `INSERT INTO videos (user_id, metadata, cdn_id, start_frame_id, end_frame_id, duration)
		VALUES ($1, '{}', 'vid1', $2, $2, 3)`, alice, plain.ID)
	require.NoError(t, err)
	fake.Put("vid", storage.VideoKey(alice, "vid1"), []byte("mp4"))
	require.NoError(t, imgs.Delete(ctx, alice, plain.ID))
	_, ok := fake.Object("vid", storage.VideoKey(alice, "vid1"))
	require.False(t, ok)
	missing, err := library.MissingImageIDs(ctx, pool, alice, []int64{plain.ID, 999})
	require.NoError(t, err)
	require.Equal(t, []int64{plain.ID, 999}, missing)
}

// gateStore holds every Put until release is closed, announcing it on
// entered first: a storage backend whose uploads are slow.
type gateStore struct {
	storage.Store
	entered chan string
	release chan struct{}
}

func newGateStore(st storage.Store) *gateStore {
	return &gateStore{Store: st, entered: make(chan string, 16), release: make(chan struct{})}
}

func (g *gateStore) Put(ctx context.Context, kind storage.Kind, key string, data []byte) error {
	g.entered <- key
	select {
	case <-g.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Store.Put(ctx, kind, key, data)
}

// waitEntered waits until n Puts have started; on a timeout it releases
// them and fails the test.
func (g *gateStore) waitEntered(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-g.entered:
		case <-time.After(5 * time.Second):
			close(g.release)
			t.Fatalf("fewer than %d uploads started at once", n)
		}
	}
}

func TestCreateUploadsOutsideTransaction(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, fake, _ := setup(t)
	alice := newUser(t, pool, "alice@example.com")
	bunny := storage.NewBunny(storage.BunnyConfig{BaseURL: fake.URL, Zones: map[storage.Kind]storage.Zone{
		storage.KindImage: {Name: "img", AccessKey: "ki"}}}, nil)
	gate := newGateStore(bunny)
	imgs := library.NewImages(pool, gate, zap.NewNop())

	type result struct {
		im      library.Image
		created bool
		err     error
	}
	done := make(chan result, 1)
	go func() {
		im, created, err := imgs.Create(ctx, library.NewImage{UserID: alice, Data: pngBytes(t, 30, 30)})
		done <- result{im, created, err}
	}()
	gate.waitEntered(t, 1)
	// While the upload hangs, no transaction is open and no lock is held:
	// slow uploads must not pin pooled connections.
	var locks, inTx int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&locks))
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND state LIKE 'idle in transaction%'`).Scan(&inTx))
	close(gate.release)
	r := <-done
	require.NoError(t, r.err)
	require.True(t, r.created)
	require.Zero(t, locks, "advisory lock held during the upload")
	require.Zero(t, inTx, "transaction open during the upload")
	_, ok := fake.Object("img", storage.ImageKey(alice, r.im.CDNID))
	require.True(t, ok)
}

func TestCreateRaceLoserDeletesItsObjects(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, fake, _ := setup(t)
	alice := newUser(t, pool, "alice@example.com")
	bunny := storage.NewBunny(storage.BunnyConfig{BaseURL: fake.URL, Zones: map[storage.Kind]storage.Zone{
		storage.KindImage: {Name: "img", AccessKey: "ki"}}}, nil)
	gate := newGateStore(bunny)
	imgs := library.NewImages(pool, gate, zap.NewNop())
	data := pngBytes(t, 40, 40)

	type result struct {
		im      library.Image
		created bool
		err     error
	}
	done := make(chan result, 2)
	for range 2 {
		go func() {
			im, created, err := imgs.Create(ctx, library.NewImage{UserID: alice, Data: data})
			done <- result{im, created, err}
		}()
	}
	// Both passed the unlocked dedup check and are uploading.
	gate.waitEntered(t, 2)
	close(gate.release)
	a, b := <-done, <-done
	require.NoError(t, a.err)
	require.NoError(t, b.err)
	require.Equal(t, a.im.ID, b.im.ID, "one image")
	require.True(t, a.created != b.created, "exactly one created")
	require.Equal(t, 1, count(t, pool, `SELECT count(*) FROM images`))
	require.Equal(t, 2, fake.Count("img"), "the loser's full image and thumbnail are deleted")
	_, ok := fake.Object("img", storage.ImageKey(alice, a.im.CDNID))
	require.True(t, ok)
}

func count(t *testing.T, pool *pgxpool.Pool, sql string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), sql).Scan(&n))
	return n
}
