{{/* The chart's name, and the prefix of every resource name (at most 52 characters, so
that suffixes such as "-operator-metrics" keep names within 63). */}}
{{- define "kiln.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "kiln.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kiln.operatorName" -}}
{{- printf "%s-operator" (include "kiln.fullname" .) -}}
{{- end -}}

{{- define "kiln.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kiln.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels of every resource. */}}
{{- define "kiln.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "kiln.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kiln
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* What selects the operator's pods (never changes across upgrades). */}}
{{- define "kiln.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "kiln.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kiln.operatorLabels" -}}
{{ include "kiln.labels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "kiln.operatorImage" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Which ValidatingAdmissionPolicy API the cluster serves: v1 (Kubernetes 1.30+), v1beta1
(1.28-1.29 with the feature gate and the API turned on), else nothing. */}}
{{- define "kiln.admissionPolicyApiVersion" -}}
{{- if .Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy" -}}
admissionregistration.k8s.io/v1
{{- else if .Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1beta1/ValidatingAdmissionPolicy" -}}
admissionregistration.k8s.io/v1beta1
{{- end -}}
{{- end -}}

{{/* The operator's rules on what it reconciles, shared by the ClusterRole (every
namespace) and the Roles (watched namespaces). Exact verbs, found in the reconcilers'
calls: server-side apply is a PATCH that may create, so it needs both create and patch. */}}
{{- define "kiln.operatorNamespacedRules" -}}
# Kiln's kinds: read and watch all three; patch TrainingJobs (a run request's annotation is
# written by InferenceServices' drift detection and removed once handled); write status.
- apiGroups: [kiln.dev]
  resources: [trainingjobs, modelversions, inferenceservices]
  verbs: [get, list, watch]
- apiGroups: [kiln.dev]
  resources: [trainingjobs]
  verbs: [patch]
# A successful training run registers a ModelVersion.
- apiGroups: [kiln.dev]
  resources: [modelversions]
  verbs: [create]
- apiGroups: [kiln.dev]
  resources: [trainingjobs/status, modelversions/status, inferenceservices/status]
  verbs: [patch]
# Training runs and validation Jobs: created, suspended and resumed, deleted when pruned.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, patch, delete]
# Pods are read for termination messages, validation results and the serving pods' metrics.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# Headless Services of multi-worker runs (created), InferenceServices' Services (applied).
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, create, patch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, create, patch]
# Events are aggregated: a repeat reads the Event of its object and reason, then patches it.
- apiGroups: [""]
  resources: [events]
  verbs: [create, get, patch]
{{- end -}}

{{/* kopf's own reads, cluster-wide in both modes: it watches CRDs for new resources and,
when it watches named namespaces, the namespaces themselves. */}}
{{- define "kiln.operatorClusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch]
{{- end -}}
