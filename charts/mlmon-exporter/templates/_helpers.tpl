{{/*
Helpers. The ones used by the sidecar templates ("mlmon-exporter.container",
"mlmon-exporter.volumes", "mlmon-exporter.checksum") read only .Values and .Release, so a
parent chart can call them with (dict "Values" (index .Values "mlmon-exporter") "Release" .Release).
*/}}

{{/* Chart name, also the app.kubernetes.io/name label. */}}
{{- define "mlmon-exporter.name" -}}
{{- default "mlmon-exporter" .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: "<release>-mlmon-exporter", at most 63 characters. */}}
{{- define "mlmon-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "mlmon-exporter.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* helm.sh/chart label value. */}}
{{- define "mlmon-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: name + instance only (a Deployment's selector is immutable). */}}
{{- define "mlmon-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlmon-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Common labels of every object. */}}
{{- define "mlmon-exporter.labels" -}}
helm.sh/chart: {{ include "mlmon-exporter.chart" . }}
{{ include "mlmon-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: exporter
app.kubernetes.io/part-of: mlmon-exporter
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* ServiceAccount name. */}}
{{- define "mlmon-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mlmon-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the ConfigMap holding config.yaml. */}}
{{- define "mlmon-exporter.configMapName" -}}
{{- default (include "mlmon-exporter.fullname" .) .Values.existingConfigMap }}
{{- end }}

{{/* Name of the Secret holding web-config.yml. */}}
{{- define "mlmon-exporter.webConfigSecretName" -}}
{{- default (printf "%s-web-config" (include "mlmon-exporter.fullname" .)) .Values.webConfig.existingSecret }}
{{- end }}

{{/* Name of the state PVC. */}}
{{- define "mlmon-exporter.pvcName" -}}
{{- default (include "mlmon-exporter.fullname" .) .Values.persistence.existingClaim }}
{{- end }}

{{/* Image reference: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "mlmon-exporter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- $appVersion := "" }}
{{- if .Chart }}{{ $appVersion = .Chart.AppVersion }}{{ end }}
{{- $tag := .Values.image.tag | default $appVersion | required "image.tag is required when the exporter container is included from another chart" }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/*
A securityContext with runAsUser / runAsGroup / fsGroup removed when .Values.openshift is
true (restricted-v2 assigns them). Call with (dict "ctx" $securityContext "openshift" $bool).
*/}}
{{- define "mlmon-exporter.securityContext" -}}
{{- $sc := deepCopy (.ctx | default dict) }}
{{- if .openshift }}
{{- $sc = omit $sc "runAsUser" "runAsGroup" "fsGroup" }}
{{- end }}
{{- toYaml $sc }}
{{- end }}

{{/* Checksum of everything in the ConfigMap, as a pod annotation value: rolls the pods on change. */}}
{{- define "mlmon-exporter.checksum" -}}
{{- list .Values.config .Values.extraConfigFiles .Values.existingConfigMap .Values.webConfig | toJson | sha256sum }}
{{- end }}

{{/* The exporter's command-line arguments (the image's ENTRYPOINT is mlmon-exporter under tini). */}}
{{- define "mlmon-exporter.args" -}}
{{- if .Values.demo.enabled }}
- demo
{{- else }}
- --config.file=/etc/mlmon/config.yaml
{{- end }}
- --web.listen-address=:{{ .Values.containerPort }}
- --state.directory=/var/lib/mlmon
- --log.level={{ .Values.logLevel }}
- --log.format={{ .Values.logFormat }}
{{- if .Values.webConfig.enabled }}
- --web.config.file=/etc/mlmon/web/web-config.yml
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/*
The exporter container, as one item of a pod's `containers` list. Standalone mode uses it in
this chart's Deployment; in sidecar mode a model server's chart includes it:
  containers:
    - name: model
      ...
    {{- include "mlmon-exporter.container" (dict "Values" (index .Values "mlmon-exporter") "Release" .Release) | nindent 4 }}
*/}}
{{- define "mlmon-exporter.container" -}}
- name: mlmon-exporter
  image: {{ include "mlmon-exporter.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  args:
    {{- include "mlmon-exporter.args" . | trim | nindent 4 }}
  ports:
    - name: mlmon-http
      containerPort: {{ .Values.containerPort }}
      protocol: TCP
  {{- with .Values.env }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.envFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.startupProbe }}
  startupProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "mlmon-exporter.securityContext" (dict "ctx" .Values.securityContext "openshift" .Values.openshift) | nindent 4 }}
  volumeMounts:
    - name: mlmon-config
      mountPath: /etc/mlmon
      readOnly: true
    - name: mlmon-state
      mountPath: /var/lib/mlmon
    - name: mlmon-tmp
      mountPath: /tmp
    {{- if .Values.webConfig.enabled }}
    - name: mlmon-web-config
      mountPath: /etc/mlmon/web
      readOnly: true
    {{- end }}
    {{- if and (eq .Values.mode "sidecar") .Values.sidecar.logVolume.name }}
    - name: {{ .Values.sidecar.logVolume.name }}
      mountPath: {{ .Values.sidecar.logVolume.mountPath }}
      readOnly: true
    {{- end }}
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
The exporter's volumes, as items of a pod's `volumes` list (the shared log volume of sidecar
mode is the model server's own and is not included).
*/}}
{{- define "mlmon-exporter.volumes" -}}
- name: mlmon-config
  configMap:
    name: {{ include "mlmon-exporter.configMapName" . }}
- name: mlmon-state
  {{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "mlmon-exporter.pvcName" . }}
  {{- else if .Values.persistence.emptyDirSizeLimit }}
  emptyDir:
    sizeLimit: {{ .Values.persistence.emptyDirSizeLimit }}
  {{- else }}
  emptyDir: {}
  {{- end }}
- name: mlmon-tmp
  {{- if .Values.tmpSizeLimit }}
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- if .Values.webConfig.enabled }}
- name: mlmon-web-config
  secret:
    secretName: {{ include "mlmon-exporter.webConfigSecretName" . }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}
