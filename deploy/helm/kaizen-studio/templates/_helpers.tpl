{{- define "kaizen.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kaizen.labels" -}}
app.kubernetes.io/name: kaizen-studio
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kaizen.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "kaizen.masterKeySecret" -}}
{{- .Values.masterKey.existingSecret | default (printf "%s-master-key" (include "kaizen.fullname" .)) -}}
{{- end -}}

{{- define "kaizen.metricsSecret" -}}
{{- .Values.metricsToken.existingSecret | default (printf "%s-metrics-token" (include "kaizen.fullname" .)) -}}
{{- end -}}

{{- define "kaizen.servicesSecret" -}}
{{- printf "%s-services" (include "kaizen.fullname" .) -}}
{{- end -}}

{{/* The environment every control-plane container shares (server, migrations). */}}
{{- define "kaizen.controlPlaneEnv" -}}
- name: KAIZEN_HOME
  value: /var/lib/kaizen
- name: KAIZEN_CP_HOST
  value: 0.0.0.0
- name: KAIZEN_CP_PORT
  value: {{ .Values.controlPlane.port | quote }}
- name: KAIZEN_MASTER_KEY
  valueFrom:
    secretKeyRef: {name: {{ include "kaizen.masterKeySecret" . }}, key: master-key}
- name: KAIZEN_METRICS_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ include "kaizen.metricsSecret" . }}, key: token}
- name: KAIZEN_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret | default (include "kaizen.servicesSecret" .) }}
      key: {{ ternary "url" "database-url" (ne .Values.database.existingSecret "") }}
{{- if or .Values.redis.existingSecret .Values.redis.url }}
- name: KAIZEN_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret | default (include "kaizen.servicesSecret" .) }}
      key: {{ ternary "url" "redis-url" (ne .Values.redis.existingSecret "") }}
{{- end }}
{{- if .Values.vault.enabled }}
- name: KAIZEN_SECRETS_BACKEND
  value: vault
- name: VAULT_ADDR
  value: {{ required "vault.addr is required when vault.enabled" .Values.vault.addr | quote }}
- name: VAULT_ROLE_ID
  valueFrom:
    secretKeyRef: {name: {{ required "vault.existingSecret is required when vault.enabled" .Values.vault.existingSecret }}, key: role-id}
- name: VAULT_SECRET_ID
  valueFrom:
    secretKeyRef: {name: {{ .Values.vault.existingSecret }}, key: secret-id}
{{- if .Values.vault.transitKey }}
- name: KAIZEN_VAULT_TRANSIT_KEY
  value: {{ .Values.vault.transitKey | quote }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "kaizen.securityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities: {drop: [ALL]}
{{- end -}}

{{- define "kaizen.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{/*
The Envoy configuration of a gateway pod: deploy/envoy/envoy.yaml (files/envoy.yaml links to
it; the e2e tests run the same file) with its placeholders filled. The one change: the
listener binds the pod's addresses (0.0.0.0) instead of loopback, so the Service reaches it.
The admin interface, the sidecar and the gateway stay on loopback, inside the pod.
*/}}
{{- define "kaizen.envoyConfig" -}}
{{- $ports := .ports -}}
{{- $text := .root.Files.Get "files/envoy.yaml" -}}
{{- $listen := "address: 127.0.0.1, port_value: ${LISTEN_PORT}" -}}
{{- if not (contains $listen $text) -}}
{{- fail "files/envoy.yaml: the listener line the chart rebinds has changed; update kaizen.envoyConfig" -}}
{{- end -}}
{{- $text = replace $listen "address: 0.0.0.0, port_value: ${LISTEN_PORT}" $text -}}
{{- $text = replace "${LISTEN_PORT}" (toString $ports.envoyPort) $text -}}
{{- $text = replace "${ADMIN_PORT}" (toString $ports.envoyAdminPort) $text -}}
{{- $text = replace "${SIDECAR_HTTP_PORT}" (toString $ports.sidecarHttpPort) $text -}}
{{- $text = replace "${UPSTREAM_PORT}" (toString $ports.gatewayPort) $text -}}
{{- if contains "${" $text -}}
{{- fail "files/envoy.yaml has a placeholder the chart does not fill" -}}
{{- end -}}
{{- $text -}}
{{- end -}}

{{/* What the sidecar and the gateway of one gateway pod both need. */}}
{{- define "kaizen.gatewayEnv" -}}
- name: KAIZEN_GATEWAY_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ .token }}, key: token}
- name: KAIZEN_CONTROL_PLANE_URL
  value: {{ .url | quote }}
{{- if hasPrefix "http://" .url }}
# Plain HTTP inside the cluster (use a mesh's mTLS, or an https:// controlPlaneUrl).
- name: KAIZEN_ALLOW_INSECURE_CONTROL_PLANE
  value: "true"
{{- end }}
{{- with .gw.scope }}
- name: KAIZEN_SCOPE
  value: {{ . | quote }}
{{- end }}
{{- if or .root.Values.redis.existingSecret .root.Values.redis.url }}
- name: KAIZEN_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .root.Values.redis.existingSecret | default (include "kaizen.servicesSecret" .root) }}
      key: {{ ternary "url" "redis-url" (ne .root.Values.redis.existingSecret "") }}
{{- end }}
{{- with .gw.env }}
{{ toYaml . }}
{{- end }}
{{- end -}}
