package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// services are the binaries `make build` produces, each from
// ./<name>/cmd/<name>, and each with a Dockerfile deploy/docker/<name>.Dockerfile.
var services = []string{"proxy", "accountsvc", "gpusvc"}

// dockerfile is what the tests need from one Dockerfile.
type dockerfile struct {
	// copies are the build-context sources of COPY instructions (not
	// COPY --from=stage).
	copies []string
	// builds are the package paths of `go build` commands.
	builds []string
	// outputs are the -o targets of the go build commands.
	outputs []string
	// fromCopies are the destinations of COPY --from=... instructions.
	fromCopies  []string
	healthcheck string
	user        string
	entrypoint  string
	stages      int
}

var (
	goBuildPkg = regexp.MustCompile(`go build\b.*?\s(\./[A-Za-z0-9_./-]+)\s*$`)
	goBuildOut = regexp.MustCompile(`\s-o\s+(\S+)`)
)

// parseDockerfile reads the instructions of a Dockerfile, joining
// continuation lines.
func parseDockerfile(tb testing.TB, path string) dockerfile {
	tb.Helper()
	var (
		df     dockerfile
		joined []string
		cur    string
	)
	for _, line := range strings.Split(string(readFile(tb, path)), "\n") {
		t := strings.TrimSpace(line)
		if cur == "" && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if strings.HasSuffix(t, "\\") {
			cur += strings.TrimSuffix(t, "\\") + " "
			continue
		}
		joined = append(joined, cur+t)
		cur = ""
	}
	require.Empty(tb, cur, "%s ends in a continuation line", rel(path))
	for _, ins := range joined {
		word, rest, _ := strings.Cut(ins, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(word) {
		case "FROM":
			df.stages++
		case "COPY":
			fields := strings.Fields(rest)
			var from bool
			var args []string
			for _, f := range fields {
				switch {
				case strings.HasPrefix(f, "--from="):
					from = true
				case strings.HasPrefix(f, "--"):
				default:
					args = append(args, f)
				}
			}
			require.GreaterOrEqual(tb, len(args), 2, "%s: COPY %s", rel(path), rest)
			if from {
				df.fromCopies = append(df.fromCopies, args[len(args)-1])
			} else {
				df.copies = append(df.copies, args[:len(args)-1]...)
			}
		case "RUN":
			for _, cmd := range strings.Split(rest, "&&") {
				cmd = strings.TrimSpace(cmd)
				if m := goBuildPkg.FindStringSubmatch(cmd); m != nil {
					df.builds = append(df.builds, m[1])
					if o := goBuildOut.FindStringSubmatch(cmd); o != nil {
						df.outputs = append(df.outputs, o[1])
					}
				}
			}
		case "HEALTHCHECK":
			df.healthcheck = rest
		case "USER":
			df.user = rest
		case "ENTRYPOINT":
			df.entrypoint = rest
		}
	}
	return df
}

// TestDockerfilesBuildWhatMakeBuilds checks each service's Dockerfile
// against the repository: the sources it copies exist, it builds the
// package `make build` builds, ships that binary, runs as non-root, and
// health-checks through the binary (the images have no curl).
func TestDockerfilesBuildWhatMakeBuilds(t *testing.T) {
	t.Parallel()
	makefile := string(readFile(t, filepath.Join(repoRoot, "Makefile")))
	for _, svc := range services {
		path := filepath.Join(deployDir, "docker", svc+".Dockerfile")
		df := parseDockerfile(t, path)
		require.GreaterOrEqual(t, df.stages, 2, "%s must be a multi-stage build", rel(path))

		for _, src := range df.copies {
			_, err := os.Stat(filepath.Join(repoRoot, src))
			require.NoError(t, err, "%s copies %s, which is not in the repository", rel(path), src)
		}
		// Workspace mode needs every module of go.work in the build.
		for _, m := range []string{"go.work", "shared/go.mod", "proxy/go.mod", "accountsvc/go.mod", "gpusvc/go.mod", "bench/go.mod", "e2e/go.mod", "deploy/go.mod"} {
			require.Contains(t, df.copies, m, "%s must copy %s", rel(path), m)
		}

		require.Equal(t, []string{"./" + svc + "/cmd/" + svc}, df.builds, "%s go build", rel(path))
		pkg := filepath.Join(repoRoot, svc, "cmd", svc)
		mains, err := filepath.Glob(filepath.Join(pkg, "*.go"))
		require.NoError(t, err)
		require.NotEmpty(t, mains, "%s builds %s, which has no Go files", rel(path), pkg)
		require.Contains(t, makefile, svc+"/cmd/"+svc, "the Makefile does not build %s", svc)

		bin := "/app/" + svc
		require.Equal(t, []string{"/out" + bin}, df.outputs, "%s go build -o", rel(path))
		require.Contains(t, df.fromCopies, bin, "%s must copy the binary to %s", rel(path), bin)
		require.Equal(t, `["`+bin+`"]`, df.entrypoint, "%s ENTRYPOINT", rel(path))
		require.Contains(t, df.healthcheck, `CMD ["`+bin+`", "healthcheck"]`, "%s HEALTHCHECK", rel(path))

		require.NotEmpty(t, df.user, "%s must set USER", rel(path))
		uid, _, _ := strings.Cut(df.user, ":")
		require.NotContains(t, []string{"0", "root"}, uid, "%s must not run as root", rel(path))

		_, err = os.Stat(path + ".dockerignore")
		require.NoError(t, err, "%s needs its .dockerignore (the context is the repository root)", rel(path))
	}
	// gpusvc (audio, video jobs) and accountsvc (uploaded videos) run
	// ffmpeg and ffprobe; the proxy needs nothing but its binary.
	for _, svc := range []string{"accountsvc", "gpusvc"} {
		b := string(readFile(t, filepath.Join(deployDir, "docker", svc+".Dockerfile")))
		require.Regexp(t, `apt-get install [^\n]*\bffmpeg\b`, b, "%s needs ffmpeg at run time", svc)
	}
	proxy := string(readFile(t, filepath.Join(deployDir, "docker", "proxy.Dockerfile")))
	require.Regexp(t, `(?m)^FROM (gcr\.io/distroless/static|scratch)`, proxy, "proxy runtime image")
	for _, svc := range services {
		b := string(readFile(t, filepath.Join(deployDir, "docker", svc+".Dockerfile")))
		require.Contains(t, b, "CGO_ENABLED=0", "%s must be static", svc)
	}
}

// TestComposeStack checks deploy/compose.yaml's structure: the stack is
// complete, builds from the Dockerfiles, orders migrations first and
// health-checks its data stores.
func TestComposeStack(t *testing.T) {
	t.Parallel()
	var compose struct {
		Services map[string]struct {
			Image string `json:"image"`
			Build *struct {
				Context    string `json:"context"`
				Dockerfile string `json:"dockerfile"`
			} `json:"build"`
			Command     []string                     `json:"command"`
			DependsOn   map[string]map[string]string `json:"depends_on"`
			Healthcheck *struct {
				Test []string `json:"test"`
			} `json:"healthcheck"`
			Profiles []string `json:"profiles"`
			Volumes  []string `json:"volumes"`
		} `json:"services"`
		Volumes map[string]any `json:"volumes"`
	}
	path := filepath.Join(deployDir, "compose.yaml")
	require.NoError(t, yaml.Unmarshal(readFile(t, path), &compose))
	for _, name := range append([]string{"postgres", "redis", "migrate"}, services...) {
		require.Contains(t, compose.Services, name, "compose.yaml service")
	}
	require.NotNil(t, compose.Services["postgres"].Healthcheck)
	require.NotNil(t, compose.Services["redis"].Healthcheck)
	require.Equal(t, []string{"migrate"}, compose.Services["migrate"].Command)
	for name, svc := range compose.Services {
		if svc.Build != nil {
			ctx := filepath.Join(deployDir, svc.Build.Context)
			_, err := os.Stat(filepath.Join(ctx, "go.work"))
			require.NoError(t, err, "compose service %s: the build context must be the repository root", name)
			_, err = os.Stat(filepath.Join(ctx, svc.Build.Dockerfile))
			require.NoError(t, err, "compose service %s: dockerfile %s", name, svc.Build.Dockerfile)
		}
		for dep := range svc.DependsOn {
			require.Contains(t, compose.Services, dep, "compose service %s depends on", name)
		}
		for _, v := range svc.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") {
				_, err := os.Stat(filepath.Join(deployDir, src))
				require.NoError(t, err, "compose service %s mounts %s", name, src)
			} else {
				require.Contains(t, compose.Volumes, src, "compose service %s uses volume %s", name, src)
			}
		}
	}
	for _, svc := range services {
		require.Equal(t, "service_completed_successfully", compose.Services[svc].DependsOn["migrate"]["condition"],
			"%s must start after the migrations", svc)
	}
}

// TestBinariesHaveHealthcheck checks that every binary the images run has
// the `healthcheck` subcommand their HEALTHCHECK calls (web.Probe): its
// main runs through shared/service, whose Binary answers it.
func TestBinariesHaveHealthcheck(t *testing.T) {
	t.Parallel()
	lib := string(readFile(t, filepath.Join(repoRoot, "shared", "service", "service.go")))
	require.Contains(t, lib, `case "healthcheck":`, "shared/service no longer answers the healthcheck subcommand")
	for _, svc := range services {
		src := string(readFile(t, filepath.Join(repoRoot, svc, "cmd", svc, "main.go")))
		require.Contains(t, src, "service.Main(", "%s does not run through shared/service, which gives the healthcheck subcommand its image's HEALTHCHECK runs (`/app/%s healthcheck`)", svc, svc)
	}
}
