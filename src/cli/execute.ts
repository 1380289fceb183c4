/** The CLI's entry for the bundled build: oclif's execute, from the same copy the commands use. */
export { execute } from '@oclif/core';
