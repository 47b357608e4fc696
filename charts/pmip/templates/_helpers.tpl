{{/* Full name of the release's objects. */}}
{{- define "pmip.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pmip.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: pmip-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: pmip
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "pmip.selectorLabels" -}}
app.kubernetes.io/name: pmip-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pmip.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pmip.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "pmip.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The domain whose LMA `helm test` checks, or "" for none. */}}
{{- define "pmip.testDomain" -}}
{{- if .Values.tests.domain -}}
{{- .Values.tests.domain -}}
{{- else if .Values.defaultDomain.enabled -}}
{{- .Values.defaultDomain.name -}}
{{- end -}}
{{- end -}}

{{/* The one namespace the operator watches with rbac.namespaced (default: the release's). */}}
{{- define "pmip.watchNamespace" -}}
{{- default .Release.Namespace .Values.operator.watchNamespace -}}
{{- end -}}
