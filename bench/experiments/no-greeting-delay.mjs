// Experiment (measures nothing itself; not part of the shipped code): loaded with
// `node --import` into mailgate to see what smtp-server's fixed 100 ms "early talker" wait before
// the 220 greeting (SMTPConnection.init → setTimeout(connectionReady, 100)) costs. It replaces
// init() with the same steps minus the timer. mailgate has its own smtp.banner_delay_ms.
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

SMTPConnection.prototype.init = function init() {
  this._setListeners(() => {
    if (this._server.options.maxClients && this._server.connections.size > this._server.options.maxClients) {
      return this.send(421, `${this.name} Too many connected clients, try again in a moment`, false);
    }
    this.connectionReady();
  });
};
