{{- define "iwd-email-connector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "iwd-email-connector.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "iwd-email-connector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "iwd-email-connector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "iwd-email-connector.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "iwd-email-connector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "iwd-email-connector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "iwd-email-connector.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "iwd-email-connector.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.registry -}}
{{- printf "%s/%s:%s" .Values.image.registry .Values.image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "iwd-email-connector.postgresql" -}}
{{- if eq .Values.store.type "postgresql" -}}true{{- end -}}
{{- end -}}

{{/*
Refuses what cannot work, with a message naming the value. Called by the Deployment.
*/}}
{{- define "iwd-email-connector.validate" -}}
{{- if not (include "iwd-email-connector.postgresql" .) -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- fail (printf "replicaCount: %d needs store.type: postgresql. With SQLite the ledger is one file on one volume that only one daemon may write; several replicas share mailboxes through leases in PostgreSQL (see the chart's README)." (int .Values.replicaCount)) -}}
{{- end -}}
{{- if .Values.hpa.enabled -}}
{{- fail "hpa.enabled needs store.type: postgresql. With SQLite only one replica may run (see the chart's README)." -}}
{{- end -}}
{{- end -}}
{{- range $key := list "store" "http" "replicas" -}}
{{- if hasKey $.Values.config $key -}}
{{- fail (printf "config.%s is set by the chart: use the values store.* and service.port instead" $key) -}}
{{- end -}}
{{- end -}}
{{- range $key := list "url" "ccid" "api_key" -}}
{{- if and (hasKey $.Values.config "iwd") (hasKey $.Values.config.iwd $key) -}}
{{- fail (printf "config.iwd.%s is set by the chart: use the value iwd.%s" $key (ternary "apiKey" $key (eq $key "api_key"))) -}}
{{- end -}}
{{- end -}}
{{- include "iwd-email-connector.refuseLiterals" (list "iwd" .Values.iwd) -}}
{{- include "iwd-email-connector.refuseLiterals" (list "config" .Values.config) -}}
{{- end -}}

{{/*
Walks a values tree; a key that names a secret (password, token, client_secret, refresh_token,
api_key, ... as in connector/secrets.py) must hold a ${KEY} or file: reference, never a value.
*/}}
{{- define "iwd-email-connector.refuseLiterals" -}}
{{- $path := index . 0 -}}
{{- $node := index . 1 -}}
{{- if kindIs "map" $node -}}
{{- range $key, $value := $node -}}
{{- $where := printf "%s.%s" $path $key -}}
{{- $name := lower (replace "-" "" (replace "_" "" (last (splitList "." $key)))) -}}
{{- if and (has $name (list "password" "token" "clientsecret" "refreshtoken" "apikey" "accesstoken" "secret")) (kindIs "string" $value) -}}
{{- if not (regexMatch "^(\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}|file:/.+)$" $value) -}}
{{- fail (printf "%s: a secret value may not be written in values; use ${KEY} (a key of existingSecret) or file:/run/secrets/<secret>/<key> (secretFiles)" $where) -}}
{{- end -}}
{{- end -}}
{{- include "iwd-email-connector.refuseLiterals" (list $where $value) -}}
{{- end -}}
{{- else if kindIs "slice" $node -}}
{{- range $i, $value := $node -}}
{{- include "iwd-email-connector.refuseLiterals" (list (printf "%s[%d]" $path $i) $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The connector's configuration file: the values' `config` plus what the chart owns.
*/}}
{{- define "iwd-email-connector.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $iwd := deepCopy (default dict .Values.config.iwd) -}}
{{- $_ := set $iwd "url" .Values.iwd.url -}}
{{- $_ := set $iwd "ccid" .Values.iwd.ccid -}}
{{- $_ := set $iwd "api_key" .Values.iwd.apiKey -}}
{{- $_ := set $cfg "iwd" $iwd -}}
{{- if include "iwd-email-connector.postgresql" . -}}
{{- $_ := set $cfg "store" (dict "url" (printf "${%s}" .Values.store.postgresql.urlKey)) -}}
{{- $leases := dict -}}
{{- with .Values.store.leases.ttlSeconds }}{{ $_ := set $leases "lease_ttl_seconds" . }}{{ end -}}
{{- with .Values.store.leases.renewSeconds }}{{ $_ := set $leases "renew_seconds" . }}{{ end -}}
{{- if $leases }}{{ $_ := set $cfg "replicas" $leases }}{{ end -}}
{{- else -}}
{{- $_ := set $cfg "store" (dict "url" "sqlite+aiosqlite:////var/lib/email-connector/connector.db") -}}
{{- end -}}
{{- $_ := set $cfg "http" (dict "host" "0.0.0.0" "port" (int .Values.service.port) "token" "${HTTP_TOKEN}") -}}
{{- toYaml $cfg -}}
{{- end -}}
