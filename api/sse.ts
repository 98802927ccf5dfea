/**
 * Server-Sent Events replies: the headers (no proxy buffering), one `data:` line per message with an
 * optional `event:` name, and nothing written once the client has gone.
 */
import type { Response } from 'express';

export class EventStream {
  private opened = false;

  constructor(private readonly res: Response) {}

  /** Whether the stream's headers went out (after which errors travel as messages, not a status). */
  get isOpen(): boolean {
    return this.opened;
  }

  open(): void {
    this.res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    this.opened = true;
  }

  /** One message: JSON data, under `event` when given. */
  send(payload: unknown, event?: string): void {
    if (this.res.writableEnded || this.res.destroyed) return;
    this.res.write(`${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(payload)}\n\n`);
  }

  /** End the reply, after a last raw line (OpenAI's `data: [DONE]`) when given. */
  end(last?: string): void {
    if (!this.res.writableEnded) this.res.end(last);
  }
}
