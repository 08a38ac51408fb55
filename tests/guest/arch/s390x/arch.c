/*
 * s390x: the command line from the IPL parameter area, RAM size and
 * console through the SCLP (service call), exit by stopping the CPU.
 *
 * SCLP facts used (service-call command words, SCCB layouts, event types)
 * are those of the s390 architecture as QEMU implements it: the SCCB is a
 * page-aligned block below 2 GiB starting with an 8-byte header
 * (length u16, function code u8, control mask u8[3], response code u16).
 * QEMU (TCG) completes a service call before `servc` returns.
 */
#include "types.h"

#define SCLP_CMDW_READ_SCP_INFO 0x00020001
#define SCLP_CMDW_READ_SCP_INFO_FORCED 0x00120001
#define SCLP_CMD_WRITE_EVENT_DATA 0x00760005
#define SCLP_CMD_WRITE_EVENT_MASK 0x00780005
#define SCLP_RC_NORMAL_READ_COMPLETION 0x0010
#define SCLP_RC_NORMAL_COMPLETION 0x0020
#define SCLP_EVENT_ASCII_CONSOLE_DATA 0x1a
#define SCLP_EVENT_MASK_MSG_ASCII 0x00000040
#define SIGP_STOP 5

struct sccb_header {
	u16 length;
	u8 function_code;
	u8 control_mask[3];
	u16 response_code;
} __attribute__((packed));

/* READ SCP INFO: what is needed of it */
struct read_info {
	struct sccb_header h;	/* 0 */
	u16 rnmax;		/* 8: storage increments */
	u8 rnsize;		/* 10: increment size in MiB (0: see rnsize2) */
	u8 _pad1[100 - 11];
	u32 rnsize2;		/* 100 */
	u64 rnmax2;		/* 104 */
} __attribute__((packed));

struct write_event_mask {
	struct sccb_header h;
	u16 _reserved;
	u16 mask_length;
	u32 cp_receive_mask;
	u32 cp_send_mask;
	u32 send_mask;
	u32 receive_mask;
} __attribute__((packed));

struct write_event_data {
	struct sccb_header h;
	/* one event buffer */
	u16 length;
	u8 type;
	u8 flags;
	u16 _reserved;
	char text[];
} __attribute__((packed));

/* QEMU wrote -append here (linker script) */
extern char ipl_args[];

static u8 sccb[4096] __attribute__((aligned(4096)));

static int servc(u32 command, void *block)
{
	int cc;

	asm volatile("	.insn	rre,0xb2200000,%1,%2\n"	/* servc */
		     "	ipm	%0\n"
		     "	srl	%0,28\n"
		     : "=&d"(cc)
		     : "d"(command), "a"((uintptr_t)block)
		     : "cc", "memory");
	return cc;
}

static u16 sclp_call(u32 command)
{
	struct sccb_header *h = (void *)sccb;

	if (servc(command, sccb))
		return 0;
	return h->response_code;
}

static u64 sclp_ram_size(void)
{
	struct read_info *ri = (void *)sccb;
	u32 commands[2] = { SCLP_CMDW_READ_SCP_INFO_FORCED, SCLP_CMDW_READ_SCP_INFO };
	u64 size, count;
	int i;

	for (i = 0; i < 2; i++) {
		memset(sccb, 0, sizeof(sccb));
		ri->h.length = sizeof(sccb);
		if (sclp_call(commands[i]) == SCLP_RC_NORMAL_READ_COMPLETION)
			break;
	}
	if (i == 2)
		return 0;
	size = ri->rnsize ? ri->rnsize : ri->rnsize2;
	count = ri->rnmax ? ri->rnmax : ri->rnmax2;
	return (size << 20) * count;
}

static void sclp_console_setup(void)
{
	struct write_event_mask *m = (void *)sccb;

	memset(sccb, 0, sizeof(*m));
	m->h.length = sizeof(*m);
	m->mask_length = sizeof(u32);
	m->cp_send_mask = SCLP_EVENT_MASK_MSG_ASCII;
	sclp_call(SCLP_CMD_WRITE_EVENT_MASK);
}

void arch_puts(const char *s)
{
	struct write_event_data *e = (void *)sccb;
	size_t n = strlen(s), room = sizeof(sccb) - sizeof(*e);

	if (n > room)
		n = room;
	memset(sccb, 0, sizeof(*e));
	memcpy(e->text, s, n);
	e->h.length = sizeof(*e) + n;
	e->length = sizeof(*e) - sizeof(e->h) + n;
	e->type = SCLP_EVENT_ASCII_CONSOLE_DATA;
	sclp_call(SCLP_CMD_WRITE_EVENT_DATA);
}

noreturn void arch_poweroff(int code)
{
	unsigned long status = 0;
	u16 cpu;

	/* QEMU shuts down once every CPU is stopped (status 0) */
	asm volatile("stap %0" : "=Q"(cpu));
	for (;;)
		asm volatile("sigp %0,%1,%2" : "+d"(status) : "d"((unsigned long)cpu),
			     "i"(SIGP_STOP) : "cc", "memory");
}

int arch_setup(char *cmdline, size_t size, struct mem_range *ranges, int max)
{
	size_t n = 0;
	u64 ram;

	sclp_console_setup();
	while (n + 1 < size && ipl_args[n])
		n++;
	memcpy(cmdline, ipl_args, n);
	cmdline[n] = 0;
	ram = sclp_ram_size();
	if (!ram) {
		printf("SCLP read info failed\n");
		abort();
	}
	ranges[0].addr = 0;
	ranges[0].len = ram;
	ranges[0].type = 1;
	return 1;
}
