/** The documents `--output json|yaml` prints live in core, where the dashboard's API uses them too. */
export * from '../core/documents.js';
