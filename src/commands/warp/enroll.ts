import { Args, Flags } from '@oclif/core';
import { BaseCommand } from '../../cli/base-command.js';
import { enrollDevice, encodeDeviceToken } from '../../core/devices.js';
import { edgeEndpoints } from '../../core/edges.js';
import { localEdgeTrust } from '../../engine/transport/identity-files.js';

export default class WarpEnroll extends BaseCommand<typeof WarpEnroll> {
  static summary = 'Enroll a device that reaches private networks from another host';
  static description =
    "Records a device and prints its token: the account, the device's ID and secret, the edges to dial (every edge running on this store, else this host's) and the CA pin. " +
    'On the device: oxyctl warp connect --token TOKEN --vnet VNET --route CIDR. ' +
    "The same device ID and secret key its GUE datagrams to the edge's --gue-listen (docs/gue.md). Treat the token like a password.";
  static examples = ['<%= config.bin %> warp enroll laptop-ana', '<%= config.bin %> warp enroll --vnet vnet-sydney branch-router'];
  static args = { name: Args.string({ description: 'A name for the device', required: true }) };
  static flags = {
    vnet: Flags.string({ multiple: true, description: 'ID or name of a virtual network the device may use (repeatable) [default: every one]' }),
  };

  async run(): Promise<{ id: string; name: string; token: string }> {
    const store = await this.store;
    const device = await enrollDevice(store, this.args.name, this.flags.vnet ?? []);
    const edge = localEdgeTrust(this.home);
    // Every live edge of the store (the device moves between them), else this host's.
    const token = encodeDeviceToken({ a: store.accountTag, d: device.id, s: device.secret, e: await edgeEndpoints(store, edge?.endpoint), p: edge?.caPin });
    process.stdout.write(`${token}\n`);
    return { id: device.id, name: device.name, token };
  }
}
