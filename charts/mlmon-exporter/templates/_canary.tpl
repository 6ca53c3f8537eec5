{{/*
PromQL of the canary analysis (values canaryAnalysis.*), shared by the Argo Rollouts
AnalysisTemplate and the Flagger MetricTemplates. Each helper takes a dict:
  range       recording-rule range (5m, 1h, 1d)
  window      `window` label of mlmon_data_drift_detected
  model, canary, stable, minSamples
              the controller's own placeholders ("{{args.canary-version}}" for Argo,
              "{{ variables.canaryVersion }}" for Flagger), substituted by the controller.
Every query reads the recording rules over the counters (fleet-wide across replicas) and
returns NOTHING while a version it reads has fewer than minSamples labelled predictions in the
range: Argo then finds neither condition true (inconclusive), Flagger finds no sample (the
canary is halted, never promoted).
*/}}

{{/* Labelled predictions of one version in the range, summed over every replica and cell. */}}
{{- define "mlmon-exporter.canary.labelled" -}}
sum by (model, model_version) (model_version_predicted_class_true_class:mlmon_labeled_predictions:increase{{ .range }}{model="{{ .model }}", model_version="{{ .version }}"})
{{- end }}

{{/* The canary's accuracy over the range. */}}
{{- define "mlmon-exporter.canary.accuracyQuery" -}}
model_version:mlmon_accuracy:ratio_rate{{ .range }}{model="{{ .model }}", model_version="{{ .canary }}"}
and on (model, model_version)
(
  {{ include "mlmon-exporter.canary.labelled" (dict "range" .range "model" .model "version" .canary) }}
  >= {{ .minSamples }}
)
{{- end }}

{{/* Stable accuracy minus canary accuracy, both over the same range (positive: the canary is worse). */}}
{{- define "mlmon-exporter.canary.dropQuery" -}}
(
    max by (model) (model_version:mlmon_accuracy:ratio_rate{{ .range }}{model="{{ .model }}", model_version="{{ .stable }}"})
  - on (model)
    max by (model) (model_version:mlmon_accuracy:ratio_rate{{ .range }}{model="{{ .model }}", model_version="{{ .canary }}"})
)
and on (model)
(
  max by (model) ({{ include "mlmon-exporter.canary.labelled" (dict "range" .range "model" .model "version" .canary) }})
  >= {{ .minSamples }}
)
and on (model)
(
  max by (model) ({{ include "mlmon-exporter.canary.labelled" (dict "range" .range "model" .model "version" .stable) }})
  >= {{ .minSamples }}
)
{{- end }}

{{/* 1 when any feature of the canary drifted from the reference in the window, else 0 (NaN
     "unknown" features are ignored; all unknown returns nothing). */}}
{{- define "mlmon-exporter.canary.dataDriftQuery" -}}
max by (model, model_version) (mlmon_data_drift_detected{model="{{ .model }}", model_version="{{ .canary }}", window="{{ .window }}"} >= 0)
and on (model, model_version)
(
  {{ include "mlmon-exporter.canary.labelled" (dict "range" .range "model" .model "version" .canary) }}
  >= {{ .minSamples }}
)
{{- end }}
