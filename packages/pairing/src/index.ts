export { PAIRING_ALPHABET, PAIRING_CODE_LENGTH, generatePairingCode } from './generate-pairing-code.js';
export { normalizePairingCode } from './normalize-pairing-code.js';
export { formatPairingCode } from './format-pairing-code.js';
export { hashPairingCode } from './hash-pairing-code.js';
export { pairingMigrations } from './pairing-migrations.js';
export {
  DEFAULT_ATTEMPT_LIMITS,
  type AttemptLimits,
  type IssueCredential,
  type PairingInfo,
  type PairingStore,
} from './pairing-store.js';
export { createSqlPairingStore } from './sql-pairing-store.js';
export { redeemPairingCode, type RedeemedPairing } from './redeem-pairing-code.js';
export {
  credentialPath,
  credentialUrls,
  deleteCredential,
  loadCredential,
  saveCredential,
  type WorkstationCredential,
} from './credential-store.js';
export {
  PAIRING_CODE_REJECTED_MESSAGE,
  PairingCodeRejectedError,
  PairingError,
  PairingRateLimitedError,
  isPairingError,
  type PairingErrorCode,
} from './pairing-error.js';
