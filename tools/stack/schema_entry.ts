// Entry point for gen_dashboard_schema.mjs: the @grafana/schema types (pinned in package.json to
// the Grafana image version in compose.yaml) that the dashboard tests validate against.
import type { Dashboard as GrafanaDashboard } from '@grafana/schema/dist/types/raw/dashboard/x/dashboard_types.gen';
import type * as timeseries from '@grafana/schema/dist/types/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';
import type * as stat from '@grafana/schema/dist/types/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as table from '@grafana/schema/dist/types/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type * as gauge from '@grafana/schema/dist/types/raw/composable/gauge/panelcfg/x/GaugePanelCfg_types.gen';
import type * as bargauge from '@grafana/schema/dist/types/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen';
import type * as text from '@grafana/schema/dist/types/raw/composable/text/panelcfg/x/TextPanelCfg_types.gen';
import type * as statetimeline from '@grafana/schema/dist/types/raw/composable/statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen';
import type * as tempo from '@grafana/schema/dist/types/raw/composable/tempo/dataquery/x/TempoDataQuery_types.gen';

export type Dashboard = GrafanaDashboard;
export type TimeseriesOptions = timeseries.Options;
export type TimeseriesFieldConfig = timeseries.FieldConfig;
export type StatOptions = stat.Options;
export type TableOptions = table.Options;
export type TableFieldConfig = table.FieldConfig;
export type GaugeOptions = gauge.Options;
export type BargaugeOptions = bargauge.Options;
export type TextOptions = text.Options;
export type StatetimelineOptions = statetimeline.Options;
export type StatetimelineFieldConfig = statetimeline.FieldConfig;
export type TempoQuery = tempo.TempoQuery;
