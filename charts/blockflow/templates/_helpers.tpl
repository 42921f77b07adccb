{{- define "blockflow.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "blockflow.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "blockflow.labels" -}}
{{ include "blockflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "blockflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "blockflow.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "blockflow.publicUrl" -}}
{{- default (printf "http://%s.%s.svc:%v" (include "blockflow.fullname" .) .Release.Namespace .Values.service.port) .Values.publicUrl -}}
{{- end -}}

{{/* The rules the controller needs wherever it watches: explicit resources and verbs. */}}
{{- define "blockflow.rules" -}}
# Apps, Blocks, Workflows: watched, finalizers added and removed (patch).
- apiGroups: ["blockflow.dev"]
  resources: ["apps", "blocks", "workflows"]
  verbs: ["get", "list", "watch", "patch"]
# WorkflowRuns: created by triggers, cancelled (patch), deleted by history limits.
- apiGroups: ["blockflow.dev"]
  resources: ["workflowruns"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["blockflow.dev"]
  resources: ["apps/status", "blocks/status", "workflows/status", "workflowruns/status"]
  verbs: ["get", "patch"]
# Secrets are read by name only (handler keys, configFrom, the events token, webhook
# signature keys) and written only for the owned signal and state Secrets: no list, no watch.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "patch"]
# Events: posted about the objects; listed (one object's, by field selector) for a run's page
# on /ui/, once the person's own SubjectAccessReview allowed them to list Events there.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
# Its own namespace's Namespace object, read when a drain cannot be called (is the namespace
# being deleted?); a RoleBinding in that namespace grants it.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get"]
# The kubernetes.job built-in step.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "create"]
{{- end -}}

{{/* Cluster-scoped: the web page (/ui/) asks the API server who a bearer token belongs to
     (TokenReview) and what that person may do (SubjectAccessReview). Create only: a review
     reads nothing. */}}
{{- define "blockflow.reviewRules" -}}
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews"]
  verbs: ["create"]
{{- end -}}

{{- define "blockflow.admissionSecret" -}}
{{- default (printf "%s-admission" (include "blockflow.fullname" .)) .Values.admission.existingSecret -}}
{{- end -}}
