package deploy_test

// The Kubernetes manifests in deploy/k8s, checked with no cluster:
//
//   - every document decodes strictly (an unknown or repeated field is an
//     error) into the k8s.io/api types of its apiVersion and kind, or the
//     prometheus-operator types for the ServiceMonitor; kubectl would
//     silently drop a misspelled field;
//   - the rules the issue asks for hold: non-root, read-only root file
//     system, all capabilities dropped, no service account token, resource
//     requests and limits, liveness /healthz and readiness /readyz on the
//     http port, two replicas and a PodDisruptionBudget per Deployment, a
//     Service and ServiceMonitor that select the pods, least privilege
//     (the tailer mounts no Postgres credential, the sink no Mongo one);
//   - the configuration works: every pod's volumes are materialised in a
//     temporary directory (ConfigMaps shipped here with their content,
//     the Secrets and ConfigMaps the operator creates with stand-in
//     values), and the ConfigMap's cdc.yaml is loaded through pkg/config
//     with the container's environment and validated for its command, and
//     the HTTP web configuration through exporter-toolkit: a key, a file
//     path or a mount that does not line up fails here, not in a rollout.

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/exporter-toolkit/web"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/amanat/cdc/pkg/config"
)

const (
	k8sDir     = "k8s"
	runbookDoc = "../docs/runbook.md"
)

// external are the objects the manifests reference but do not ship,
// because their content is the operator's (credentials, certificates):
// name -> the keys the pods may mount. docs/runbook.md must say how to
// create each (checked below).
var external = map[string]map[string][]string{
	"Secret": {
		"cdc-tailer":   {"mongo-uri", "nats-password"},
		"cdc-sink":     {"postgres-url", "nats-password"},
		"cdc-migrate":  {"postgres-url"},
		"cdc-ops":      {"mongo-uri", "postgres-url", "nats-password"},
		"cdc-http-tls": {"tls.crt", "tls.key"},
	},
	"ConfigMap": {
		"cdc-ca": {"mongo-ca.crt", "postgres-ca.crt", "nats-ca.crt", "http-ca.crt"},
	},
}

// commandRoles is what each cdc subcommand validates its configuration
// for (pkg/cli); the ops Job runs any operator command, so it must
// satisfy the widest (snapshot, replay: RoleAll).
var commandRoles = map[string]config.Role{
	"tail":    config.RoleTailer,
	"sink":    config.RoleSink,
	"migrate": config.RolePostgres,
	"status":  config.RoleAll,
}

// k8sScheme knows every kind the manifests may hold.
func k8sScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme,
		policyv1.AddToScheme, networkingv1.AddToScheme, monitoringv1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// manifest is one decoded document and where it came from.
type manifest struct {
	where string // file:document
	obj   runtime.Object
}

// decodeManifests strictly decodes every YAML document of data.
func decodeManifests(file string, data []byte, s *runtime.Scheme) ([]manifest, []error) {
	dec := serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []manifest
	var errs []error
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		where := fmt.Sprintf("%s:%d", file, i)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			break
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			// Strict errors come with the object decoded anyway: any
			// error is a failure.
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		out = append(out, manifest{where: where, obj: obj})
	}
	return out, errs
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.Bytes()
}

// loadManifests decodes every file of deploy/k8s.
func loadManifests(t *testing.T) []manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", k8sDir, err)
	}
	s := k8sScheme(t)
	var all []manifest
	for _, f := range files {
		ms, errs := decodeManifests(f, read(t, f), s)
		for _, err := range errs {
			t.Error(err)
		}
		all = append(all, ms...)
	}
	if t.Failed() {
		t.FailNow()
	}
	return all
}

// workload is a pod template with what owns it.
type workload struct {
	where, kind, name string
	labels            map[string]string
	pod               corev1.PodSpec
}

func workloads(ms []manifest) []workload {
	var out []workload
	for _, m := range ms {
		switch o := m.obj.(type) {
		case *appsv1.Deployment:
			out = append(out, workload{m.where, "Deployment", o.Name, o.Spec.Template.Labels, o.Spec.Template.Spec})
		case *batchv1.Job:
			out = append(out, workload{m.where, "Job", o.Name + o.GenerateName, o.Spec.Template.Labels, o.Spec.Template.Spec})
		}
	}
	return out
}

// TestK8sManifestsDecodeStrictly: every document decodes into its API type
// with no unknown field, and the checker refuses the mistakes it exists
// for.
func TestK8sManifestsDecodeStrictly(t *testing.T) {
	ms := loadManifests(t)
	kinds := map[string]int{}
	for _, m := range ms {
		kinds[fmt.Sprintf("%T", m.obj)]++
	}
	for _, want := range []string{"*v1.Deployment", "*v1.ConfigMap", "*v1.PodDisruptionBudget", "*v1.ServiceMonitor",
		"*v1.Service", "*v1.Job", "*v1.ServiceAccount", "*v1.NetworkPolicy"} {
		if kinds[want] == 0 {
			t.Errorf("no %s in %s (have %v)", want, k8sDir, kinds)
		}
	}

	s := k8sScheme(t)
	tailer := string(read(t, filepath.Join(k8sDir, "tailer.yaml")))
	cases := []struct{ name, old, new, want string }{
		{"unknown field in a spec", "  replicas: 2\n", "  replicas: 2\n  replicaCount: 2\n", `unknown field "spec.replicaCount"`},
		{"misspelled container field", "          readinessProbe:", "          readynessProbe:", `unknown field "spec.template.spec.containers[0].readynessProbe"`},
		{"repeated field", "  replicas: 2\n", "  replicas: 2\n  replicas: 3\n", `"replicas" already set`},
		{"wrong type", "  replicas: 2\n", "  replicas: two\n", "cannot unmarshal"},
		{"unknown kind", "kind: Deployment", "kind: Deploymnt", "no kind"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(tailer, tc.old) {
				t.Fatalf("tailer.yaml no longer contains %q: update this test", tc.old)
			}
			_, errs := decodeManifests("tailer.yaml", []byte(strings.Replace(tailer, tc.old, tc.new, 1)), s)
			if !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), tc.want) }) {
				t.Errorf("want an error containing %q, got %v", tc.want, errors.Join(errs...))
			}
		})
	}
}

// TestK8sWorkloadPolicy: security context, probes, resources, replicas,
// disruption budgets, scraping and least privilege.
func TestK8sWorkloadPolicy(t *testing.T) {
	ms := loadManifests(t)
	shipped := map[string]map[string]bool{} // kind -> name
	var pdbs []*policyv1.PodDisruptionBudget
	var services []*corev1.Service
	var monitors []*monitoringv1.ServiceMonitor
	for _, m := range ms {
		acc, _ := m.obj.(metav1.Object)
		kind := strings.TrimPrefix(fmt.Sprintf("%T", m.obj), "*v1.")
		if shipped[kind] == nil {
			shipped[kind] = map[string]bool{}
		}
		shipped[kind][acc.GetName()] = true
		switch o := m.obj.(type) {
		case *policyv1.PodDisruptionBudget:
			pdbs = append(pdbs, o)
		case *corev1.Service:
			services = append(services, o)
		case *monitoringv1.ServiceMonitor:
			monitors = append(monitors, o)
		}
	}
	deployments := map[string]*appsv1.Deployment{}
	for _, m := range ms {
		if d, ok := m.obj.(*appsv1.Deployment); ok {
			deployments[d.Name] = d
		}
	}
	for _, name := range []string{"cdc-tailer", "cdc-sink"} {
		if deployments[name] == nil {
			t.Errorf("no Deployment %s", name)
		}
	}

	for _, d := range deployments {
		where := "Deployment " + d.Name
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
			t.Errorf("%s: replicas must be 2 (one active, one standing by on the fence)", where)
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: selector %v does not match the template's labels %v (%v)", where, d.Spec.Selector, d.Spec.Template.Labels, err)
		}
		if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
			t.Errorf("%s: strategy must be RollingUpdate with maxUnavailable 0 (the new pod stands by before the old one stops)", where)
		}
		covered := 0
		for _, p := range pdbs {
			ps, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
			if err == nil && ps.Matches(labels.Set(d.Spec.Template.Labels)) {
				covered++
				if p.Spec.MinAvailable == nil || p.Spec.MinAvailable.IntValue() != 1 {
					t.Errorf("PodDisruptionBudget %s: minAvailable must be 1 for %s", p.Name, where)
				}
			}
		}
		if covered != 1 {
			t.Errorf("%s: %d PodDisruptionBudgets select its pods, want 1", where, covered)
		}
		scraped := false
		for _, svc := range services {
			if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				for _, sm := range monitors {
					ss, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
					if err != nil || !ss.Matches(labels.Set(svc.Labels)) {
						continue
					}
					for _, ep := range sm.Spec.Endpoints {
						if slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) && ep.Path == "/metrics" {
							scraped = true
						}
					}
				}
			}
		}
		if !scraped {
			t.Errorf("%s: no Service selecting its pods is selected by a ServiceMonitor endpoint on a Service port with path /metrics", where)
		}
	}

	for _, w := range workloads(ms) {
		where := w.kind + " " + w.name
		p := w.pod
		if p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken must be false (cdc calls no Kubernetes API)", where)
		}
		if !shipped["ServiceAccount"][p.ServiceAccountName] {
			t.Errorf("%s: serviceAccountName %q is not shipped", where, p.ServiceAccountName)
		}
		psc := p.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Errorf("%s: the pod securityContext must set runAsNonRoot and a non-zero runAsUser", where)
		}
		if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: seccompProfile must be RuntimeDefault", where)
		}
		if len(p.Containers) != 1 || len(p.InitContainers) != 0 {
			t.Errorf("%s: want exactly one container", where)
			continue
		}
		c := p.Containers[0]
		checkContainer(t, where, c)
		if len(c.Args) == 0 || commandRoles[c.Args[0]] == 0 {
			t.Errorf("%s: args %v: the first must be a cdc command this test knows (%v)", where, c.Args, commandRoles)
		}
		if w.kind == "Deployment" {
			checkProbes(t, where, c)
		}
		// Every Secret or ConfigMap volume is shipped or documented in
		// external, and mounts only keys it has.
		for _, v := range p.Volumes {
			kind, name, items := volumeSource(v)
			if kind == "" || shipped[kind][name] {
				continue
			}
			keys, ok := external[kind][name]
			if !ok {
				t.Errorf("%s: volume %s references %s %s, which is neither shipped nor in this test's external table", where, v.Name, kind, name)
				continue
			}
			if len(items) == 0 {
				t.Errorf("%s: volume %s mounts all of %s %s: list its items (least privilege)", where, v.Name, kind, name)
			}
			for _, it := range items {
				if !slices.Contains(keys, it.Key) {
					t.Errorf("%s: volume %s mounts key %q, which %s %s does not have (%v)", where, v.Name, it.Key, kind, name, keys)
				}
			}
		}
	}

	// Least privilege between the roles.
	for name, forbidden := range map[string]string{"cdc-tailer": "postgres-url", "cdc-sink": "mongo-uri"} {
		d := deployments[name]
		if d == nil {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if _, _, items := volumeSource(v); slices.ContainsFunc(items, func(it corev1.KeyToPath) bool { return it.Key == forbidden }) {
				t.Errorf("Deployment %s mounts %s: it has no use for it", name, forbidden)
			}
		}
	}

	// The operator can find how to create every external object.
	runbook := string(read(t, runbookDoc))
	for kind, objs := range external {
		for name := range objs {
			if !strings.Contains(runbook, name) {
				t.Errorf("%s: %s %s is referenced by the manifests but not explained", runbookDoc, kind, name)
			}
		}
	}
}

func checkContainer(t *testing.T, where string, c corev1.Container) {
	t.Helper()
	if strings.HasSuffix(c.Image, ":latest") || !strings.ContainsAny(c.Image, ":@") {
		t.Errorf("%s: image %q must name a tag or a digest, never latest", where, c.Image)
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Errorf("%s: container securityContext missing", where)
	default:
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation must be false", where)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: readOnlyRootFilesystem must be true", where)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s: privileged", where)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: capabilities must drop ALL and add none", where)
		}
	}
	req, lim := c.Resources.Requests, c.Resources.Limits
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		rq, okr := req[r]
		lm, okl := lim[r]
		if !okr || !okl {
			t.Errorf("%s: resources.requests and resources.limits must both set %s", where, r)
			continue
		}
		if rq.Cmp(lm) > 0 {
			t.Errorf("%s: %s request %s above its limit %s", where, r, rq.String(), lm.String())
		}
	}
	// GOMEMLIMIT, when set, is a soft limit under the hard one.
	for _, e := range c.Env {
		if e.Name != "GOMEMLIMIT" {
			continue
		}
		soft, err := parseGoMemLimit(e.Value)
		if err != nil {
			t.Errorf("%s: GOMEMLIMIT %q: %v", where, e.Value, err)
			continue
		}
		if hard, ok := lim[corev1.ResourceMemory]; ok && soft >= hard.Value() {
			t.Errorf("%s: GOMEMLIMIT %s is not below the memory limit %s", where, e.Value, hard.String())
		}
	}
}

// parseGoMemLimit parses GOMEMLIMIT's syntax (runtime/debug.SetMemoryLimit:
// a byte count with an optional B, KiB, MiB, GiB or TiB suffix).
func parseGoMemLimit(s string) (int64, error) {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			return v * u.mult, err
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// checkProbes: liveness /healthz and readiness /readyz on the container's
// port named http, which is the config's http.addr port.
func checkProbes(t *testing.T, where string, c corev1.Container) {
	t.Helper()
	var port int32
	for _, p := range c.Ports {
		if p.Name == "http" {
			port = p.ContainerPort
		}
	}
	if port != 9464 {
		t.Errorf("%s: want a container port named http on 9464 (http.addr), got %d", where, port)
	}
	for _, pr := range []struct {
		name, path string
		probe      *corev1.Probe
	}{{"livenessProbe", "/healthz", c.LivenessProbe}, {"readinessProbe", "/readyz", c.ReadinessProbe}, {"startupProbe", "/healthz", c.StartupProbe}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("%s: %s must be an httpGet", where, pr.name)
			continue
		}
		g := pr.probe.HTTPGet
		if g.Path != pr.path || g.Port.String() != "http" {
			t.Errorf("%s: %s is %s on port %s, want %s on http", where, pr.name, g.Path, g.Port.String(), pr.path)
		}
		if g.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("%s: %s scheme %s: the endpoint serves TLS (web-config.yml)", where, pr.name, g.Scheme)
		}
	}
}

// volumeSource returns the kind and name of a Secret or ConfigMap volume
// and its items ("" for other volumes).
func volumeSource(v corev1.Volume) (kind, name string, items []corev1.KeyToPath) {
	switch {
	case v.Secret != nil:
		return "Secret", v.Secret.SecretName, v.Secret.Items
	case v.ConfigMap != nil:
		return "ConfigMap", v.ConfigMap.Name, v.ConfigMap.Items
	}
	return "", "", nil
}

// TestK8sConfigLoads: each pod's configuration, as the pod would see it,
// loads and validates for its command.
func TestK8sConfigLoads(t *testing.T) {
	ms := loadManifests(t)
	configMaps := map[string]map[string]string{}
	for _, m := range ms {
		if cm, ok := m.obj.(*corev1.ConfigMap); ok {
			configMaps[cm.Name] = cm.Data
		}
	}
	cert, key := selfSigned(t)
	// Stand-ins for what the operator puts in the external objects. The
	// paths in them are rewritten like every other path below.
	standIn := map[string]string{
		"mongo-uri": "mongodb://cdc-tailer:pw@mongo-0.mongo:27017,mongo-1.mongo:27017/?replicaSet=rs0&tls=true" +
			"&tlsCAFile=/etc/cdc/ca/mongo-ca.crt&authSource=admin",
		"postgres-url":    "postgres://cdc_sink:pw@pg.db:5432/escrow?sslmode=verify-full&sslrootcert=/etc/cdc/ca/postgres-ca.crt",
		"nats-password":   "pw",
		"tls.crt":         cert,
		"tls.key":         key,
		"mongo-ca.crt":    cert,
		"postgres-ca.crt": cert,
		"nats-ca.crt":     cert,
		"http-ca.crt":     cert,
	}
	for _, w := range workloads(ms) {
		t.Run(w.kind+"/"+w.name, func(t *testing.T) {
			root := t.TempDir()
			rewrite := func(s string) string {
				for _, prefix := range []string{"/etc/cdc/", "/var/lib/cdc"} {
					s = strings.ReplaceAll(s, prefix, root+prefix)
				}
				return s
			}
			c := w.pod.Containers[0]
			volumes := map[string]corev1.Volume{}
			for _, v := range w.pod.Volumes {
				volumes[v.Name] = v
			}
			for _, vm := range c.VolumeMounts {
				v, ok := volumes[vm.Name]
				if !ok {
					t.Fatalf("volumeMount %s: no such volume", vm.Name)
				}
				dir := filepath.Join(root, vm.MountPath)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				kind, name, items := volumeSource(v)
				if kind == "" {
					continue // emptyDir
				}
				content := func(key string) (string, bool) {
					if data, ok := configMaps[name]; ok && kind == "ConfigMap" {
						v, ok := data[key]
						return v, ok
					}
					v, ok := standIn[key]
					return v, ok
				}
				if len(items) == 0 {
					for k := range configMaps[name] {
						items = append(items, corev1.KeyToPath{Key: k, Path: k})
					}
				}
				for _, it := range items {
					v, ok := content(it.Key)
					if !ok {
						t.Fatalf("volume %s: %s %s has no key %s", vm.Name, kind, name, it.Key)
					}
					if err := os.WriteFile(filepath.Join(dir, it.Path), []byte(rewrite(v)), 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			cfgPath := ""
			for i, a := range c.Args {
				if (a == "--config" || a == "-c") && i+1 < len(c.Args) {
					cfgPath = rewrite(c.Args[i+1])
				}
			}
			if cfgPath == "" {
				t.Fatalf("args %v name no --config file", c.Args)
			}
			var env []string
			for _, e := range c.Env {
				v := e.Value
				if e.ValueFrom != nil {
					if e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
						t.Fatalf("env %s: only fieldRef metadata.name is simulated", e.Name)
					}
					v = w.name + "-5d8f7c9b4-x2x7q"
				}
				env = append(env, e.Name+"="+rewrite(v))
			}
			cfg, err := config.Load(cfgPath, func() []string { return env })
			if err != nil {
				t.Fatalf("load %s with %v: %v", c.Args[1:], env, err)
			}
			role := commandRoles[c.Args[0]]
			if err := cfg.Validate(role); err != nil {
				t.Fatalf("validate for %s: %v", c.Args[0], err)
			}
			if w.kind == "Deployment" {
				if cfg.HTTP.WebConfigFile == "" {
					t.Fatalf("http.web_config_file is empty: the endpoint listens on the pod network (%s)", cfg.HTTP.Addr)
				}
				if err := web.Validate(cfg.HTTP.WebConfigFile); err != nil {
					t.Fatalf("web config: %v", err)
				}
				if _, port, _ := net.SplitHostPort(cfg.HTTP.Addr); port != "9464" {
					t.Fatalf("http.addr %s: the probes and the Service use port 9464", cfg.HTTP.Addr)
				}
				if role&config.RoleTailer != 0 && cfg.Tailer.Instance == "" || role&config.RoleSink != 0 && cfg.Sink.Instance == "" {
					t.Fatalf("the instance name (tailer.instance / sink.instance) should be the pod's, so a standby names the holder")
				}
			}
			// Secrets come from files only.
			var inline []string
			for _, kv := range env {
				k, _, _ := strings.Cut(kv, "=")
				if slices.ContainsFunc(config.SecretFiles(), func(f config.SecretFile) bool {
					return k == "CDC_"+strings.ToUpper(strings.ReplaceAll(f.Key, ".", "__"))
				}) {
					inline = append(inline, k)
				}
			}
			if len(inline) > 0 {
				t.Fatalf("secrets set inline in the environment: %v (use the _FILE key)", inline)
			}
		})
	}
}

// TestK8sResourcesMatchMeasurement: the long-running pods keep the
// measured figures their comments explain (one place to change them).
func TestK8sResourcesMatchMeasurement(t *testing.T) {
	ms := loadManifests(t)
	var got []string
	for _, m := range ms {
		d, ok := m.obj.(*appsv1.Deployment)
		if !ok {
			continue
		}
		r := d.Spec.Template.Spec.Containers[0].Resources
		q := func(l corev1.ResourceList, n corev1.ResourceName) string { v := l[n]; return v.String() }
		got = append(got, fmt.Sprintf("%s cpu %s/%s memory %s/%s", d.Name, q(r.Requests, corev1.ResourceCPU),
			q(r.Limits, corev1.ResourceCPU), q(r.Requests, corev1.ResourceMemory), q(r.Limits, corev1.ResourceMemory)))
		// Peak RSS measured with GOMEMLIMIT=300MiB was 328 MiB, without
		// it 537 MiB: the limit must hold the former with room.
		if lim := r.Limits[corev1.ResourceMemory]; lim.Cmp(resource.MustParse("400Mi")) < 0 {
			t.Errorf("Deployment %s: memory limit %s is below the measured peak with a soft limit (328 MiB) plus headroom", d.Name, lim.String())
		}
	}
	sort.Strings(got)
	want := []string{"cdc-sink cpu 250m/1 memory 256Mi/512Mi", "cdc-tailer cpu 250m/1 memory 256Mi/512Mi"}
	if !slices.Equal(got, want) {
		t.Errorf("resources changed:\n got %q\nwant %q\nupdate the measurement comments in tailer.yaml and sink.yaml with the figures", got, want)
	}
}

// selfSigned is a PEM certificate and key for the stand-in TLS files.
func selfSigned(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cdc-metrics"}, DNSNames: []string{"cdc-metrics"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
}
