package libraryapi

import (
	"time"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/ratelimit"
)

// Register adds the library routes to e with the legacy auth kind and
// per-route rate limit of each (docs/legacy-contract.md §3.2–§3.6; check order: auth,
// then the limit, then the handler).
func (a *API) Register(e *echo.Echo) {
	jwt := a.opts.Verifier.Required()
	ct := auth.ChallengeToken(a.opts.ChallengeTokens...)
	byIP := ratelimit.ByIP(a.opts.TrustedProxies)
	user := func(name string, perMinute int) []echo.MiddlewareFunc {
		return []echo.MiddlewareFunc{jwt, a.opts.Limiter.Middleware(ratelimit.Rule{
			Name: "library:" + name, Limit: perMinute, Window: time.Minute, Key: ratelimit.ByUser})}
	}
	public := func(name string, perMinute int) []echo.MiddlewareFunc {
		return []echo.MiddlewareFunc{ct, a.opts.Limiter.Middleware(ratelimit.Rule{
			Name: "library:" + name, Limit: perMinute, Window: time.Minute, Key: byIP})}
	}

	// §3.2 Images (POST /images is gpusvc's).
	e.GET("/images", a.handleGalleryList, public("gallery", 15)...)
	e.GET("/templates/:cdn_id", a.handleTemplateGet, public("template", 15)...)
	e.POST("/user-images", a.handleUserImageCreate, user("user_image_create", 32)...)
	e.GET("/users/:user_id/images", a.handleUserImageList, user("image_list", 15)...)
	e.GET("/users/:user_id/images/:image_id", a.handleUserImageGet, user("image_get", 100)...)
	e.PUT("/users/:user_id/images/:image_id", a.handleUserImageUpdate, user("image_update", 10)...)
	e.DELETE("/users/:user_id/images/:image_id", a.handleUserImageDelete, user("image_delete", 20)...)

	// §3.3 Audio.
	e.POST("/audios", a.handleAudioCreate, user("audio_create", 15)...)
	e.POST("/audio-extend", a.handleAudioExtend, user("audio_extend", 10)...)
	e.POST("/audio-split", a.handleAudioSplit, user("audio_split", 15)...)
	e.POST("/users/:user_id/audios", a.handleAudioUpload, user("audio_upload", 5)...)
	e.GET("/users/:user_id/audios", a.handleAudioList, user("audio_list", 10)...)
	e.GET("/users/:user_id/audios/:audio_id", a.handleAudioGet, user("audio_get", 10)...)
	e.PUT("/users/:user_id/audios/:audio_id", a.handleAudioUpdate, user("audio_update", 10)...)
	e.DELETE("/users/:user_id/audios/:audio_id", a.handleAudioDelete, user("audio_delete", 10)...)

	// §3.4 Links.
	e.POST("/users/:user_id/links", a.handleLinkCreate, user("link_create", 10)...)
	e.GET("/users/:user_id/links", a.handleLinkList, user("link_list", 10)...)
	e.GET("/links/:link_id", a.handleLinkShared, public("link_shared", 10)...)
	e.PUT("/users/:user_id/links/:link_id", a.handleLinkUpdate, user("link_update", 10)...)
	e.DELETE("/users/:user_id/links/:link_id", a.handleLinkDelete, user("link_delete", 10)...)

	// §3.5 Videos.
	e.POST("/users/videos", a.handleVideoUpload, user("video_upload", 5)...)
	e.GET("/users/:user_id/videos", a.handleVideoList, user("video_list", 10)...)
	e.GET("/users/:user_id/videos/:video_id", a.handleVideoGet, user("video_get", 10)...)
	e.PUT("/users/:user_id/videos/:video_id", a.handleVideoUpdate, user("video_update", 10)...)
	e.DELETE("/users/:user_id/videos/:video_id", a.handleVideoDelete, user("video_delete", 10)...)

	// §3.6 Video projects (DELETE is new).
	e.POST("/users/:user_id/video-projects", a.handleProjectCreate, user("project_create", 5)...)
	e.GET("/users/:user_id/video-projects", a.handleProjectList, user("project_list", 10)...)
	e.GET("/users/:user_id/video-projects/:project_id", a.handleProjectGet, user("project_get", 10)...)
	e.PUT("/users/:user_id/video-projects/:project_id", a.handleProjectUpdate, user("project_update", 10)...)
	e.DELETE("/users/:user_id/video-projects/:project_id", a.handleProjectDelete, user("project_delete", 10)...)
	e.POST("/video-projects/:project_id/queue", a.handleProjectQueue, user("project_queue", 10)...)
}
