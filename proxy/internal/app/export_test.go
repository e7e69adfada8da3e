package app

import "github.com/labstack/echo/v4"

// EchoRoutes returns the routes the proxy serves itself (tests only).
func EchoRoutes(a *App) []*echo.Route { return a.echo.Routes() }
