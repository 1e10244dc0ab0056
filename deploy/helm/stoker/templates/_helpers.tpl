{{/* Common names and labels. */}}
{{- define "stoker.name" -}}stoker-coordinator{{- end -}}

{{- define "stoker.labels" -}}
app.kubernetes.io/name: stoker-coordinator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "stoker.selectorLabels" -}}
app.kubernetes.io/name: stoker-coordinator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "stoker.leaderElection" -}}
{{- if or .Values.leaderElection (gt (int .Values.replicaCount) 1) }}true{{ else }}false{{ end -}}
{{- end -}}
