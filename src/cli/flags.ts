import { Flags } from '@oclif/core';

/** Flags shared by many commands, declared once. */
export const outputFlag = Flags.option({
  char: 'o',
  options: ['json', 'yaml'] as const,
  description: "Render output using given FORMAT. Valid options are 'json' or 'yaml'",
})();

export const vnetFlag = Flags.string({
  aliases: ['vn'],
  description: 'The ID or name of the virtual network; without it the default virtual network is used.',
  helpValue: 'VNET',
});

export const yesFlag = Flags.boolean({
  char: 'y',
  description: 'Confirm without asking (without a terminal, deleting goes ahead as in cloudflared).',
});

/** `service install|uninstall --root`: an image being built instead of the live system. */
export const serviceRootFlag = Flags.string({
  description: 'Write into this root directory instead of the live system (an image being built); enables the unit offline',
  env: 'OXY_SERVICE_ROOT',
});
