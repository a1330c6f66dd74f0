export { loadConfig, type ControlPlaneConfig } from './config.js';
export { startControlPlane, type RunningControlPlane, type StartOptions } from './server.js';
export { createApp, type AppDeps } from './app.js';
export { controlPlaneMigrations } from './migrations.js';
export { WorkstationStore } from './stores/workstation-store.js';
export { HttpError, API_ERROR_STATUS, type ApiErrorCode } from './errors.js';
export { connectCommand } from './routes/pairing.js';
