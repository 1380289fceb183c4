import { Args } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { yesFlag } from '../../cli/flags.js';
import { confirmDestructive } from '../../cli/confirm.js';
import { resolveDevice, revokeDevice } from '../../core/devices.js';

export default class WarpRevoke extends BaseCommand<typeof WarpRevoke> {
  static summary = "Revoke an enrolled device's token";
  static description =
    'The device is refused at its next registration with the edge (a reconnect, or a new warp connect); its GUE datagrams are refused within a store poll.';
  static examples = ['<%= config.bin %> warp revoke --yes laptop-ana'];
  static args = { device: Args.string({ description: 'ID or name of the device', required: true }) };
  static flags = { yes: yesFlag };

  async run(): Promise<{ id: string; name: string }> {
    const store = await this.store;
    const device = await resolveDevice(store, this.args.device);
    await confirmDestructive(`Revoke device ${device.name} (${device.id})?`, this.flags.yes, 'refuse');
    await revokeDevice(store, device.id);
    process.stdout.write(`Revoked device ${device.name} with id ${device.id}\n`);
    return { id: device.id, name: device.name };
  }
}
